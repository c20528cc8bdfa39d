"""The web page at /ui in a real browser: headless Chromium driven by Selenium against the real `bilstm serve`."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SENTENCE = "Peter Blackburn visited Bonn in 1996 ."


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
    if text:
        box.send_keys(text)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")


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
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#result-tag div.entities mark.entity')]"
        ".map(m => [m.querySelector('span').textContent.trim(), m.firstChild.textContent.trim()])")
    assert shown == [[entity["label"], entity["text"]] for entity in tagged["entities"]]
    # the text around the entities is all there: the page minus the labels reads as the input
    plain = browser.execute_script(
        "const copy = document.querySelector('#result-tag div.entities').cloneNode(true);"
        "copy.querySelectorAll('mark span').forEach(s => s.remove()); return copy.textContent")
    assert " ".join(plain.split()) == SENTENCE

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
