"""What every entry point accepts as a text, and how an over-long text is cut: one set of rules.

Policy (docs/batch.md, "Odd characters"):

* **Lone surrogates** (``"\\ud800"``: a Python string can hold one, e.g. from a JSON ``\\ud800`` escape, but it is
  not Unicode text and cannot be encoded as UTF-8) are **refused**: the text gets an
  :class:`~toolkit.errors.InputError` (an errors-file record in a batch job, 422 over HTTP) naming where.
* **Control characters** (C0 except tab, newline and carriage return; DEL; C1) are **read as spaces**: the model
  sees a space of the same length, so character offsets into the original text stay right, and the text
  itself is returned unchanged. NUL is one of them.
* A text with nothing but whitespace and control characters is **blank** and refused.
* **Length**: every task has a character limit (``max_chars``). A text over it is refused unless the caller
  asks to cut it (``truncate``), in which case it is cut at a whitespace boundary and the result says so.
  Where cutting loses nothing the model reads (a classifier that keeps only its first or last N tokens),
  :func:`clip_runs` cuts first, so such texts are never refused for their length.
"""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
SURROGATE = re.compile("[\ud800-\udfff]")
NON_SPACE_RUN = re.compile(r"\S+")  # \s is str.isspace, where spaCy's tokenizer splits chunks


def excerpt(text: str, width: int = 40) -> str:
    """A short printable quote of ``text`` for messages (escapes included)."""
    return repr(text[:width]) + ("…" if len(text) > width else "")


def is_blank(text: str) -> bool:
    """Nothing but whitespace and control characters: nothing for a model to read."""
    return not CONTROL.sub(" ", text).strip()


def text_problem(text: object) -> str | None:
    """Why ``text`` cannot be given to a model, or None when it can (length is checked separately)."""
    if not isinstance(text, str):
        return f"is a {type(text).__name__}, not a string"
    match = SURROGATE.search(text)
    if match is not None:
        return (f"contains an unpaired UTF-16 surrogate U+{ord(match.group()):04X} at character {match.start()}: "
                "it is not valid Unicode and cannot be encoded as UTF-8; send valid Unicode text")
    if is_blank(text):
        return "is empty or blank (only whitespace or control characters); there is nothing to predict"
    return None


def blank_controls(text: str) -> str:
    """Control characters → spaces (same length, so offsets into ``text`` still hold)."""
    return CONTROL.sub(" ", text) if CONTROL.search(text) else text


def cut_to_chars(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at the last whitespace before the limit when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    boundary = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return head[:boundary].rstrip() if boundary > limit // 2 else head


def clip_runs(text: str, keep: int, side: str) -> str:
    """Cut ``text`` to the whitespace-delimited runs that tokenisation keeping ``keep`` tokens can reach.

    A tokenizer that splits at whitespace first (spaCy's does) gives every run of non-space characters at
    least one token, and tokenises each run on its own. Keeping the last ``keep + 1`` runs (``side="tail"``)
    therefore yields exactly the same last ``keep`` tokens as the whole text; likewise the first runs for
    ``"head"``. ``"head+tail"`` keeps runs from both ends (``keep // 4`` and the rest, as the tokenizer's own
    truncation splits them), joined by a space, enough that the tokenizer still has more tokens than it keeps.
    The text must already have its HTML breaks and control characters blanked (both can hold spaces).
    """
    if (len(text) + 1) // 2 <= keep + 1:  # too short to hold more runs than are kept
        return text
    runs = [match.start() for match in NON_SPACE_RUN.finditer(text)]
    if len(runs) <= keep + 2:
        return text
    if side == "tail":
        return text[runs[-(keep + 1)]:]
    if side == "head":
        return text[: runs[keep + 1]]
    head = keep // 4
    return text[: runs[head + 1]] + " " + text[runs[-(keep - head + 1)]:]
