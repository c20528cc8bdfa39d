"""HTML page assembly (every string escaped) and the report's output folder (atomic writes).

Texts in a report come from data files, model directories and logs, none of which is trusted: every value
goes through :func:`esc` unless it is :class:`Markup` (HTML this package built itself, or displaCy's markup,
which escapes the text it is given). The page also carries a Content-Security-Policy that allows no script and
no remote resource at all, so even a value that slipped through could not run or fetch anything.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from toolkit.artifact import write_file_atomically
from toolkit.errors import ConfigError

CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"
"""No scripts, no fonts, no remote images: the figures are files next to the page."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: .85em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .8em; max-height: 40em; }
.side { display: flex; gap: 1em; flex-wrap: wrap; } .side > div { flex: 1 1 30em; min-width: 0; }
.example { border: 1px solid #ddd; padding: .5em; margin: .6em 0; }
"""


class Markup(str):
    """A string that already is safe HTML (built here from escaped parts): :func:`esc` passes it through."""


def esc(value: Any) -> Markup:
    """``value`` as HTML text: escaped (quotes too, so it is safe in attributes), numbers formatted."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(number(value) if isinstance(value, (int, float)) else str(value), quote=True))


def number(value: Any) -> str:
    """How a number is shown: as stored in report.json (values are rounded before they get here)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return str(value)


def shorten(text: str, limit: int = 300) -> str:
    """The start of a long text: tables stay readable (their line numbers find the rest)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def join(parts: Iterable[str]) -> Markup:
    """Concatenate HTML parts, escaping any that are not :class:`Markup`."""
    return Markup("".join(esc(part) for part in parts))


def tag(name: str, content: Any = "", **attributes: Any) -> Markup:
    """``<name attr="…">content</name>``; attribute values and non-Markup content are escaped."""
    attrs = "".join(f' {key.rstrip("_")}="{esc(value)}"' for key, value in attributes.items() if value is not None)
    return Markup(f"<{name}{attrs}>{esc(content)}</{name}>")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Markup:
    """A table; numeric cells are right-aligned, every cell escaped unless it is :class:`Markup`."""
    head = join(tag("th", header) for header in headers)
    body = []
    for row in rows:
        cells = [tag("td", cell, class_="num" if isinstance(cell, (int, float)) and not isinstance(cell, bool)
                     else None) for cell in row]
        body.append(tag("tr", join(cells)))
    return tag("table", join([tag("thead", tag("tr", head)), tag("tbody", join(body))]))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` → ``[("a.b", 1)]``; lists become compact JSON (one table row each)."""
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items += flatten(value, name + ".")
        elif isinstance(value, (list, tuple, Mapping)):
            items.append((name, json.dumps(value, ensure_ascii=False)))
        else:
            items.append((name, value))
    return items


def key_values(mapping: Mapping[str, Any]) -> Markup:
    """A two-column table of a (nested) mapping."""
    return table(["name", "value"], flatten(mapping))


def figure(name: str, caption: str) -> Markup:
    """An image file next to the page (relative link), with its caption as alt text too."""
    image = Markup(f'<img src="{esc(quote(name))}" alt="{esc(caption)}">')
    return tag("figure", join([image, tag("figcaption", caption)]))


def pre(text: str) -> Markup:
    return tag("pre", text)


def details(summary: str, content: Any) -> Markup:
    """A collapsed block (long records: the resolved config, the file list)."""
    return tag("details", join([tag("summary", summary), content]))


def note(text: str) -> Markup:
    return tag("p", text, class_="note")


def section(title: str, *parts: Any) -> Markup:
    return tag("section", join([tag("h2", title), *parts]))


def page(title: str, subtitle: str, sections: Sequence[Any]) -> str:
    """A whole self-contained document: inline style, no script, no link to anything outside its folder."""
    head = join([Markup('<meta charset="utf-8">'),
                 Markup(f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'),
                 Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                 tag("title", title), tag("style", Markup(STYLE))])
    body = join([tag("h1", title), note(subtitle), *sections])
    return f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>{head}</head>\n<body>\n{body}\n</body>\n</html>\n"


# ---- the output folder ---------------------------------------------------------------------------------------


def check_out_dir(out: str | Path, refuse_inside: Sequence[Path] = (), refuse_equal: Sequence[Path] = ()) -> Path:
    """Check ``--out`` before any work is done: a folder (made later if missing) the report may write into.

    Raises:
        ConfigError: ``out`` is an existing file, inside (or equal to) a folder in ``refuse_inside`` (a model
            directory, a log folder), equal to one in ``refuse_equal`` (a run directory), or not writable.
    """
    path = Path(out).expanduser()
    resolved = path.resolve()
    for folder in refuse_inside:
        if resolved == folder.resolve() or folder.resolve() in resolved.parents:
            where = folder if resolved == folder.resolve() else f"inside {folder}"
            raise ConfigError(f"--out {out} is {where}: write the report somewhere else, e.g. "
                              f"{folder.resolve().parent / (folder.resolve().name + '_report')}")
    for folder in refuse_equal:
        if resolved == folder.resolve():
            raise ConfigError(f"--out {out} is {folder} itself: give a new folder, e.g. {path / 'report'}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: give a folder for index.html and the figures")
    existing = path
    while not existing.exists():  # the nearest folder that exists is where the new ones will be made
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, so the folder cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable")
    return path


def json_ready(value: Any) -> Any:
    """NaN/inf → null (JSON has no such numbers), tuples → lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def write_report(out: Path, document: str, figures: Mapping[str, bytes], data: Mapping[str, Any]) -> list[Path]:
    """Write the figures, ``report.json`` and (last, so it never links a missing figure) ``index.html``.

    Returns the paths written, ``index.html`` first.

    Raises:
        ConfigError: the folder cannot be made or written (one line, with the system's reason).
    """
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in figures.items():
            write_file_atomically(out / name, png)
            written.append(out / name)
        record = json.dumps(json_ready(data), indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"
        write_file_atomically(out / "report.json", record.encode("utf-8"))
        write_file_atomically(out / "index.html", document.encode("utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot write the report into {out}: {error.strerror or error}") from None
    return [out / "index.html", out / "report.json", *written]
