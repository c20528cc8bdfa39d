"""Readers for parallel text (no Lightning import, so the Predictor can use them).

Two layouts:

* line-aligned files, plain or ``.gz``: ``train.de`` + ``train.en`` (line *i* of one translates line *i*
  of the other). Given the source file, the target file is found by swapping the language suffix:
  ``val.de`` → ``val.en``, ``val.de.gz`` → ``val.en.gz`` (also ``.src`` → ``.tgt``);
* JSONL with one ``{"source": ..., "target": ...}`` object per line (field names configurable).

Errors are :class:`~toolkit.errors.DataError`: misaligned files name both files and both line counts,
an empty line names its file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.data.readers import _field, data_format, decoded_lines, read_records
from toolkit.errors import DataError

GENERIC_SUFFIXES = ("src", "tgt")


@dataclass(frozen=True)
class SentencePair:
    """One sentence pair and the (1-based) line it came from."""

    source: str
    target: str
    line: int


def _split_language(path: Path) -> tuple[str, str, str]:
    """``(stem, language suffix, compression suffix)``: ``val.de.gz`` → ``("val", "de", ".gz")``."""
    name = path.name
    compression = ".gz" if name.endswith(".gz") else ""
    name = name.removesuffix(compression)
    stem, dot, language = name.rpartition(".")
    return (stem, language, compression) if dot and stem else (name, "", compression)


def target_path(source: str | Path, source_lang: str = "de", target_lang: str = "en") -> Path:
    """The line-aligned target (reference) file of a source file, by swapping the language suffix.

    ``val.de`` → ``val.en``; ``val.de.gz`` → ``val.en.gz``; ``test.src`` → ``test.tgt``.

    Raises:
        DataError: the name has no language suffix to swap.
    """
    source = Path(source)
    stem, language, compression = _split_language(source)
    swaps = {source_lang: target_lang, GENERIC_SUFFIXES[0]: GENERIC_SUFFIXES[1]}
    if language not in swaps:
        raise DataError(
            source, f"cannot tell where the target side is: the name does not end in .{source_lang} or .src",
            hint=f"name the files X.{source_lang} / X.{target_lang} (optionally .gz) or use JSONL with "
                 "source/target fields",
        )
    return source.with_name(f"{stem}.{swaps[language]}{compression}")


def read_aligned(source: str | Path, target: str | Path) -> list[SentencePair]:
    """Pairs from two line-aligned files; misaligned files raise a DataError naming both and both counts."""
    sources = [line for _, line in decoded_lines(source)]
    targets = [line for _, line in decoded_lines(target)]
    if len(sources) != len(targets):
        raise DataError(
            source, f"has {len(sources)} lines but its parallel file {target} has {len(targets)} lines",
            hint="line i of each file must translate line i of the other",
        )
    if not sources:
        raise DataError(source, "is empty", hint="a parallel file needs at least one sentence")
    examples = []
    for number, (src, tgt) in enumerate(zip(sources, targets, strict=True), start=1):
        for path, text in ((source, src), (target, tgt)):
            if not text.strip():
                raise DataError(path, "line is empty; every line must hold one sentence", number,
                                hint="remove the pair from both files")
        examples.append(SentencePair(src.strip(), tgt.strip(), number))
    return examples


def read_jsonl_pairs(path: str | Path, source_field: str = "source",
                     target_field: str = "target") -> list[SentencePair]:
    """Pairs from a JSONL file with a source and a target field per object."""
    examples = [
        SentencePair(_field(record, source_field, path, line, "source").strip(),
                        _field(record, target_field, path, line, "target").strip(), line)
        for line, record in read_records(path)
    ]
    if not examples:
        raise DataError(path, "contains no records", hint="the file is empty or has only blank lines")
    return examples


def read_bitext(path: str | Path, source_lang: str = "de", target_lang: str = "en", source_field: str = "source",
                  target_field: str = "target") -> list[SentencePair]:
    """Sentence pairs from a JSONL file or from a source file plus its suffix-swapped target file."""
    if bitext_format(path) == "jsonl":
        return read_jsonl_pairs(path, source_field, target_field)
    return read_aligned(path, target_path(path, source_lang, target_lang))


def bitext_format(path: str | Path) -> str:
    """``jsonl`` for JSONL files, else ``text`` (language suffixes like ``.de`` are not file types)."""
    _, language, _ = _split_language(Path(path))
    if language.lower() in ("jsonl", "json", "ndjson"):
        return data_format(path)
    return "text"
