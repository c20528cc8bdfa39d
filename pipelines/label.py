"""Batch labelling: a model directory + an input file → a JSONL file of predictions (input order)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolkit.data.readers import data_format, decoded_lines
from toolkit.errors import DataError
from toolkit.predict import Predictor

WINDOW = 4096  # texts read, length-sorted and predicted together; bounds memory


def read_texts(path: str | Path, text_field: str = "text") -> Iterator[tuple[int, str]]:
    """``(line, text)`` from a .txt (one text per line) or .jsonl (``text_field``) file; blank lines skipped."""
    kind = data_format(path)
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        if kind == "txt":
            yield number, line
        elif kind == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(path, f"not valid JSON ({error.msg})", number) from None
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(path, f"missing string field {text_field!r}", number, hint="set --text-field")
            yield number, text
        else:
            raise DataError(path, f"cannot label a {kind} file", hint="use .txt or .jsonl")


def _windows(records: Iterator[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    window: list[tuple[int, str]] = []
    for record in records:
        window.append(record)
        if len(window) == WINDOW:
            yield window
            window = []
    if window:
        yield window


def _label_texts(predictor: Any, input_path: str | Path, sink: Any, text_field: str, batch_size: int) -> int:
    count = 0
    for window in _windows(read_texts(input_path, text_field)):
        predictions = predictor.predict([text for _, text in window], batch_size)
        for (line, text), prediction in zip(window, predictions, strict=True):
            sink.write(json.dumps({"line": line, "text": text, **prediction.to_dict()}, ensure_ascii=False) + "\n")
        count += len(window)
    return count


def _label_conll(predictor: Any, input_path: str | Path, sink: Any, as_conll: bool, batch_size: int) -> int:
    """Tag a column file sentence by sentence (windowed); CoNLL out = input line + predicted tag."""
    from toolkit.data.conll import Sentence, iter_conll

    count = 0
    pending: list[Sentence | str] = []

    def flush() -> None:
        sentences = [item for item in pending if isinstance(item, Sentence)]
        tagged = iter(predictor.tag_tokens([s.tokens for s in sentences], batch_size))
        for item in pending:
            if isinstance(item, str):  # -DOCSTART- line: conlleval expects a tag column on it too
                if as_conll:
                    sink.write(f"{item} O\n\n")
                continue
            tags = next(tagged).tags
            if as_conll:
                sink.writelines(f"{line} {tag}\n" for line, tag in zip(item.lines, tags, strict=True))
                sink.write("\n")
            else:
                sink.write(json.dumps({"line": item.first_line, "tokens": item.tokens, "tags": tags},
                                      ensure_ascii=False) + "\n")
        pending.clear()

    for item in iter_conll(input_path, with_tags=False):
        pending.append(item)
        count += isinstance(item, Sentence)
        if len(pending) >= WINDOW:
            flush()
    flush()
    return count


def label_file(model_dir: str | Path, input_path: str | Path, output_path: str | Path,
               text_field: str = "text", batch_size: int = 64) -> dict[str, Any]:
    """Label every text of ``input_path`` into JSONL (or CoNLL for taggers) at ``output_path``, atomically."""
    predictor = Predictor.load(model_dir)
    output = Path(output_path)
    partial = output.with_name(output.name + ".partial")
    count = 0
    conll_in = data_format(input_path) == "conll"
    if conll_in and predictor.task != "tag":
        raise DataError(input_path, f"CoNLL input needs a tagger model; {model_dir} is a {predictor.task!r} model")
    if output.suffix == ".conll" and not conll_in:
        raise DataError(output, "CoNLL output needs CoNLL input (tokens to write the tags beside)",
                        hint="write .jsonl instead")
    with open(partial, "w", encoding="utf-8") as sink:
        if conll_in:
            count = _label_conll(predictor, input_path, sink, output.suffix == ".conll", batch_size)
        else:
            count = _label_texts(predictor, input_path, sink, text_field, batch_size)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(partial, output)
    return {"output": str(output), "records": count}
