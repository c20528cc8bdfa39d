"""The web page at /ui in a real browser: headless Chromium driven by Selenium against the real `bilstm serve`."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SENTENCE = "Peter Blackburn visited Bonn in 1996 ."
# Texts around words the sample tagger tags ("Peter Blackburn", "Bonn" and look-alikes such as "B$1onn"), with
# String.replace patterns and characters outside the BMP (one code point in the API's offsets, two UTF-16 code
# units in the browser) before, inside and after entities; and markup and TPL_ENT's own placeholders.
DOLLARS = ("$&", "$1", "$'", "$`", "$$")
ODD_TEXTS = {
    "dollars-emoji": "Peter Blackburn $& visited \N{GRINNING FACE} Peter \N{GRINNING FACE}Blackburn in B$1onn $' "
                     "\N{MATHEMATICAL FRAKTUR CAPITAL U} and Bonn $$ .",
    "dollars-fraktur": "Peter Blackburn $` \N{MATHEMATICAL FRAKTUR CAPITAL U} visited B$$onn $& \N{GRINNING FACE} "
                       "and B$`onn \N{MATHEMATICAL FRAKTUR CAPITAL U} in 1996 .",
    "markup": 'Peter Blackburn visited <b>Bonn</b> &lt; B{label}onn <img src=x '
              'onerror="document.body.dataset.injected=1"> .',
}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
    if CHROMIUM is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("no Chromium here: `apt-get install chromium chromium-driver` (Debian) gives the headless "
                    "browser this test drives")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1600"):
        options.add_argument(argument)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)  # offline: no Selenium Manager download
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def submit(driver, url: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}/ui")
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.model")) == 4)
    box = driver.find_element(By.ID, "text")
    box.clear()
    if any(ord(char) > 0xFFFF for char in text):  # ChromeDriver types only BMP characters
        driver.execute_script("arguments[0].value = arguments[1]", box, text)
    elif text:
        box.send_keys(text)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")


def template_parts() -> tuple[str, str, str, str, str]:
    """displaCy's TPL_ENT (what the server fills the page with): the whitespace before and after the mark, before
    and after the entity's text inside it, and the mark itself without that outer whitespace."""
    from spacy.displacy.templates import TPL_ENT

    start, end = TPL_ENT.index("<mark"), TPL_ENT.rindex("</mark>") + len("</mark>")
    mark = TPL_ENT[start:end]
    inside = re.sub(r"<span[^>]*>\{label\}\{kb_link\}</span>", "", mark[mark.index(">") + 1: -len("</mark>")])
    before_text, after_text = inside.split("{text}")
    return TPL_ENT[:start], TPL_ENT[end:], before_text, after_text, mark


def assert_entities_drawn(driver, text: str, tagged: dict) -> None:
    """The tag box draws exactly the API's spans of ``text`` in displaCy's markup and colours, and reads as
    ``text``: every character in place, the highlights' texts ``text[start:end]`` of the API's code-point offsets."""
    from spacy.displacy.render import DEFAULT_LABEL_COLORS

    from serving.ui import CONLL_COLOURS

    before_mark, after_mark, before_text, after_text, mark_template = template_parts()
    pieces = driver.execute_script(
        "return [...document.querySelector('#result-tag div.entities').childNodes].map(n =>"
        " n.nodeType === Node.TEXT_NODE ? ['text', n.data] : [n.tagName.toLowerCase(), n.outerHTML,"
        " [...n.childNodes].filter(c => c.nodeType === Node.TEXT_NODE).map(c => c.data).join(''),"
        " n.querySelector('span').textContent])")
    gaps, marks, gap = [], [], ""
    for kind, *data in pieces:
        if kind == "text":
            gap += data[0]
        else:
            assert kind == "mark", pieces
            gaps.append(gap)
            gap = ""
            marks.append(data)
    gaps.append(gap)
    # the template's own whitespace sits around each mark and around its text: take it off, the rest is the input
    for i, gap in enumerate(gaps):
        if i > 0:
            assert gap.startswith(after_mark), (gap, pieces)
            gap = gap[len(after_mark):]
        if i < len(marks):
            assert gap.endswith(before_mark), (gap, pieces)
            gap = gap[:len(gap) - len(before_mark)]
        gaps[i] = gap
    shown = []
    for _, inner, label in marks:
        assert inner.startswith(before_text) and inner.endswith(after_text), (inner, pieces)
        shown.append([label, inner[len(before_text):len(inner) - len(after_text)]])
    visible = gaps[0] + "".join(entity + after for (_, entity), after in zip(shown, gaps[1:], strict=True))
    assert visible == text

    expected = [[entity["label"], text[entity["start"]:entity["end"]]] for entity in tagged["entities"]]
    assert [entity["text"] for entity in tagged["entities"]] == [entity for _, entity in expected]
    assert shown == expected
    # displaCy's markup and colours, filled in as displacy.render would (Chromium writes <, > and & as entities)
    for (outer, _, _), entity in zip(marks, tagged["entities"], strict=True):
        colour = DEFAULT_LABEL_COLORS.get(CONLL_COLOURS.get(entity["label"], entity["label"]), "#ddd")
        assert outer == (mark_template.replace("{bg}", colour).replace("{kb_link}", "")
                         .replace("{label}", html.escape(entity["label"], quote=False))
                         .replace("{text}", html.escape(text[entity["start"]:entity["end"]], quote=False)))


def test_page_shows_every_models_answer(browser, server, client, tmp_path):
    from selenium.webdriver.common.by import By

    submit(browser, server.url, SENTENCE)
    browser.save_screenshot(str(tmp_path / "ui.png"))
    assert (tmp_path / "ui.png").stat().st_size > 10_000

    # class probabilities as bars, one per label, the predicted label marked
    classified = client.post("/classify", json={"texts": [SENTENCE]}).json()[0]
    rows = browser.find_elements(By.CSS_SELECTOR, "#result-classify .bar-row")
    assert [row.get_attribute("data-label") for row in rows] == list(classified["probabilities"])
    for row in rows:
        probability = classified["probabilities"][row.get_attribute("data-label")]
        assert float(row.get_attribute("data-probability")) == pytest.approx(probability, abs=1e-6)
        width = row.find_element(By.CSS_SELECTOR, ".bar").value_of_css_property("width")
        track = row.find_element(By.CSS_SELECTOR, ".bar-track").value_of_css_property("width")
        assert float(width[:-2]) / float(track[:-2]) == pytest.approx(probability, abs=0.01)
    best = browser.find_element(By.CSS_SELECTOR, "#result-classify .bar-row.best")
    assert best.get_attribute("data-label") == classified["label"]

    # entities inline in displaCy's markup, the same spans the API gives
    tagged = client.post("/tag", json={"texts": [SENTENCE]}).json()[0]
    assert tagged["entities"], "the sample tagger should find an entity in its own training sentence"
    assert_entities_drawn(browser, SENTENCE, tagged)

    # translation and its attention heatmap: one row per output subword, one column per source subword
    translated = client.post("/translate", json={"texts": [SENTENCE], "attention": True}).json()[0]
    assert browser.find_element(By.CSS_SELECTOR, "#result-translate .translation").text == translated["translation"]
    heat_rows = browser.find_elements(By.CSS_SELECTOR, "#result-translate table.heatmap tbody tr")
    assert len(heat_rows) == len(translated["target_tokens"])
    assert all(len(row.find_elements(By.TAG_NAME, "td")) == len(translated["source_tokens"]) for row in heat_rows)

    # language model: perplexity and a continuation
    scored = client.post("/score", json={"texts": [SENTENCE]}).json()[0]
    assert f"perplexity {scored['perplexity']:.2f}" in browser.find_element(By.CSS_SELECTOR, "#result-lm").text
    assert browser.find_element(By.CSS_SELECTOR, "#result-lm .generated").text.strip()
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")


@pytest.mark.parametrize("text", ODD_TEXTS.values(), ids=ODD_TEXTS.keys())
def test_page_draws_the_apis_spans_of_any_text(browser, server, client, text):
    """"$&"-like sequences are not String.replace patterns, a character outside the BMP before an entity shifts
    nothing, and markup in the text stays text."""
    from selenium.webdriver.common.by import By

    assert all(any(dollars in case for case in ODD_TEXTS.values()) for dollars in DOLLARS)
    tagged = client.post("/tag", json={"texts": [text]}).json()[0]
    entities = tagged["entities"]
    odd = {"$": [i for i, char in enumerate(text) if char == "$"],
           "beyond the BMP": [i for i, char in enumerate(text) if ord(char) > 0xFFFF],
           "markup": [i for i, char in enumerate(text) if char in "<{"]}
    odd = {kind: places for kind, places in odd.items() if places}
    first = min(min(places) for places in odd.values())
    assert any(entity["end"] <= first for entity in entities), ("no entity before the odd characters", entities)
    for kind, places in odd.items():  # so that the test cannot pass on a text with no entity where it matters
        assert any(entity["start"] > places[0] for entity in entities), (f"no entity after {kind}", entities)
        assert any(entity["start"] <= i < entity["end"] for i in places for entity in entities), (
            f"no entity with {kind} in it", entities)
        assert any(i >= entity["end"] for i in places for entity in entities), (f"no {kind} after an entity",
                                                                                 entities)

    submit(browser, server.url, text)
    assert_entities_drawn(browser, text, tagged)
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img, #results b, #results script")
    assert browser.execute_script("return document.body.dataset.injected") is None
    assert not browser.find_elements(By.CSS_SELECTOR, ".error")


@pytest.mark.parametrize("text, says", [
    ("", "invalid request: texts.0"),
    ("x" * 201, "longer than the limit of 200 characters"),
])
def test_page_shows_the_apis_error_message(browser, server, text, says):
    from selenium.webdriver.common.by import By

    submit(browser, server.url, text)
    errors = {section.get_attribute("data-task"): section.find_element(By.CSS_SELECTOR, ".error").text
              for section in browser.find_elements(By.CSS_SELECTOR, "section.model")}
    assert set(errors) == {"classify", "tag", "translate", "lm"}
    for task, message in errors.items():
        assert says in message, (task, message)


def test_page_loads_nothing_from_elsewhere(browser, server, client):
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), "the page must not load remote assets"
    submit(browser, server.url, SENTENCE)
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(name.startswith(server.url) for name in fetched), fetched
