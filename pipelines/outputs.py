"""Where a labelling job writes, and the checks that it can write there without touching its input.

Everything is checked before the model is loaded or a byte is read, and refused with one
:class:`~toolkit.errors.DataError` line (exit status 2 from the CLI): an output that is the input (the same path,
a symlink to it or a hard link of it: compared by device and inode), an output that is a directory, an output
whose directory does not exist or cannot be written, and an output name whose extension is not the format
the job writes. The job's own side files (``OUTPUT.partial``, ``.progress``, ``.lock``…) are checked the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.errors import DataError

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".conll": "conll"}


def output_paths(output: Path) -> dict[str, Path]:
    """The job's files beside OUTPUT: partial output, partial errors, progress record, final errors file."""
    return {"data": output.with_name(output.name + ".partial"),
            "errors": output.with_name(output.name + ".errors.partial"),
            "progress": output.with_name(output.name + ".progress"),
            "errors_final": output.with_name(output.name + ".errors.jsonl")}


def shard_folder(output: Path) -> Path:
    """Where a data-parallel job keeps each rank's shard: ``OUTPUT.ddp/``."""
    return output.with_name(output.name + ".ddp")


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)  # follows symlinks; equal device and inode (hard links too)
    except OSError:
        return False


def output_format(output: Path) -> str:
    """``jsonl`` or ``conll`` from the output's extension; a clear error for anything else (``out.csv``)."""
    kind = OUTPUT_FORMATS.get(output.suffix.lower())
    if kind is None:
        found = f"{output.suffix!r} files" if output.suffix else "files without an extension"
        raise DataError(output, f"the job writes JSON Lines (or CoNLL), not {found}",
                        hint="name the output .jsonl (or .conll for a tagger reading CoNLL input)")
    return kind


def check_output(input_path: Path, output: Path) -> str:
    """Refuse an output the job cannot or must not write; returns its format (``jsonl`` or ``conll``).

    The input's safety comes first: an output (or side file) that is the input is named as such even when
    its name is wrong in other ways too.
    """
    side = output_paths(output)
    for role, path in {"output": output, **side, "lock": side["progress"].with_name(side["progress"].name + ".lock")
                       }.items():
        if _same_file(path, input_path):
            what = "the output" if role == "output" else f"the job's {role} file {path.name}"
            raise DataError(output, f"{what} would overwrite the input {input_path}",
                            hint="write the output to another file")
    shards = shard_folder(output)
    if shards.is_dir() and any(_same_file(item, input_path) for item in shards.iterdir()):
        raise DataError(output, f"the input {input_path} lies in the job's shard folder {shards}")
    if output.is_dir():
        raise DataError(output, "is a directory", hint=f"name a file inside it, e.g. {output / 'labels.jsonl'}")
    folder = output.parent
    if not folder.is_dir():
        raise DataError(output, f"its folder {folder} does not exist", hint=f"create it first: mkdir -p {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(output, f"its folder {folder} is not writable")
    return output_format(output)
