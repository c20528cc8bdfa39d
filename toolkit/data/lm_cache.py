"""A language model's tokenised corpus on disk: tokenise once, train many times (and train where the text is not).

Tokenising IMDB's 20M tokens with spaCy takes about 2 minutes per run on one core, and the forward and backward
models read the same corpus. ``LanguageModelData(corpus_cache=DIR)`` writes the vocabulary and the forward token
streams to ``DIR`` after tokenising, and later runs with the same data settings read them instead (fairseq's
``preprocess`` step, folded into the data module). Two files, no pickle:

* ``corpus.safetensors``: the ``train``, ``val`` (and ``test``) streams in reading order, ``[tokens]`` uint16 when
  the vocabulary fits (int32 otherwise);
* ``corpus.json``: the data settings the streams were made with, the vocabulary, line counts, the SHA-256 of the
  input files and of ``corpus.safetensors``. It is written last, so a crash mid-write leaves no usable cache.

A cache made with other settings is refused with the difference named. When the input files are present their
SHA-256 must match the recorded one; when they are absent (a GPU machine the text was not copied to) the cache is
used on the strength of the recorded fingerprint, and the model directory records that fingerprint as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from toolkit.artifact import write_file_atomically
from toolkit.data.readers import file_sha256
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMAT = 1
STREAMS_FILE = "corpus.safetensors"
INDEX_FILE = "corpus.json"


@dataclass
class TokenisedCorpus:
    """What tokenising produced: the vocabulary and the forward streams (``[tokens]`` int64 ids)."""

    vocab: Vocab
    streams: dict[str, torch.Tensor]
    lines: dict[str, int]
    excluded: int
    sha256: str
    """SHA-256 over the training and dev files' bytes, in order: the model directory's data fingerprint."""


def save_corpus(root: str | Path, settings: dict[str, Any], files: list[str], corpus: TokenisedCorpus) -> None:
    """Write ``corpus``, made with ``settings`` (JSON-able) from ``files``, to the cache directory ``root``."""
    root = Path(root)
    input_sha256 = file_sha256(*files)  # reading the inputs stays outside the write errors below
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write(root, settings, input_sha256, corpus)
    except OSError as error:
        raise ConfigError(f"data.corpus_cache {str(root)!r} cannot be written ({error.strerror or error}); point it "
                          "at a writable directory, or leave it out to tokenise every run") from None


def _write(root: Path, settings: dict[str, Any], input_sha256: str, corpus: TokenisedCorpus) -> None:
    dtype = torch.uint16 if len(corpus.vocab) <= 1 << 16 else torch.int32  # halves IMDB's 80 MB
    streams = save({name: stream.to(dtype).contiguous() for name, stream in corpus.streams.items()})
    write_file_atomically(root / STREAMS_FILE, streams)
    index = {"format": FORMAT, "settings": settings, "vocab": corpus.vocab.to_json(), "lines": corpus.lines,
             "excluded": corpus.excluded, "data_sha256": corpus.sha256, "input_sha256": input_sha256,
             "streams_sha256": hashlib.sha256(streams).hexdigest()}
    write_file_atomically(root / INDEX_FILE, json.dumps(index, ensure_ascii=False).encode("utf-8"))


def load_corpus(root: str | Path, settings: dict[str, Any], files: list[str]) -> TokenisedCorpus | None:
    """The cached corpus in ``root`` if it was made with ``settings`` from ``files``; None if there is none yet.

    Raises ConfigError when the cache was made with other settings, DataError when it is damaged or the input
    files changed since.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data.corpus_cache {str(root)!r} is a file, not a directory; point it at a directory")
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        recorded = index["settings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(str(index_path), f"is not a readable corpus cache ({error})",
                        hint="delete the directory to tokenise again") from None
    if index.get("format") != FORMAT:
        raise DataError(str(index_path), f"has cache format {index.get('format')!r}, this toolkit reads {FORMAT}",
                        hint="delete the directory to tokenise again")
    differences = sorted(key for key in {*recorded, *settings} if recorded.get(key) != settings.get(key))
    if differences:
        shown = "; ".join(f"{key}: cache {recorded.get(key)!r}, now {settings.get(key)!r}" for key in differences)
        raise ConfigError(f"data.corpus_cache {str(root)!r} was made with other data settings ({shown}); "
                          "point corpus_cache at another directory or delete this one")
    present = [Path(name).is_file() for name in files]
    if all(present):
        if file_sha256(*files) != index["input_sha256"]:
            raise DataError(str(root), f"was made from other contents of {files}",
                            hint="delete the directory to tokenise the files as they are now")
    else:
        missing = [name for name, found in zip(files, present, strict=True) if not found]
        log.warning("corpus cache %s: input files %s are absent; using the tokens made from SHA-256 %s", root,
                    missing, index["input_sha256"])
    streams_path = root / STREAMS_FILE
    data = streams_path.read_bytes() if streams_path.is_file() else None  # read once: checked, then parsed
    if data is None or hashlib.sha256(data).hexdigest() != index["streams_sha256"]:
        raise DataError(str(streams_path), "is missing or does not match corpus.json",
                        hint="delete the directory to tokenise again")
    streams = {name: tensor.long() for name, tensor in load(data).items()}
    return TokenisedCorpus(Vocab.from_json(index["vocab"]), streams, index["lines"], index["excluded"],
                           index["data_sha256"])
