"""A language model's tokenised corpus on disk: tokenise once, train many times (and train where the text is not).

Tokenising IMDB's 20M tokens with spaCy takes about 2 minutes per run on one core, and the forward and backward
models read the same corpus. ``LMData(corpus_cache=DIR)`` writes the vocabulary and the forward token
streams to ``DIR`` after tokenising, and later runs with the same data settings read them instead (fairseq's
``preprocess`` step, folded into the data module). Two files, no pickle:

* ``corpus.safetensors``: the ``train``, ``val`` (and ``test``) streams in reading order, ``[tokens]`` uint16 when
  the vocabulary fits (int32 otherwise);
* ``corpus.json``: the data settings the streams were made with, the vocabulary, line counts, each stream's token
  count, the SHA-256 of the input files and of ``corpus.safetensors``. It is written last, so a crash mid-write
  leaves no usable cache.

A cache made with other settings is refused with the difference named. When the input files are present their
SHA-256 must match the recorded one; when they are absent (a GPU machine the text was not copied to) the cache is
used on the strength of the recorded fingerprint, and the model directory records that fingerprint as usual.

Reading checks the cache like a model directory is checked, because the recorded SHA-256 only catches accidents
(whoever can edit the streams can edit the JSON): the index's fields and types, the vocabulary (the language
model's specials first, unique strings), and each stream's presence, dtype, shape and id range against that
vocabulary. Anything off is one :class:`~toolkit.errors.ConfigError` naming the file, the problem and how to
rebuild, never a traceback or a model trained on garbage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from toolkit.artifact import write_file_atomically
from toolkit.data.readers import file_sha256
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMAT = 2
"""2: ``corpus.json`` records each stream's token count (format 1 did not, so its shapes could not be checked)."""
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


def stream_dtype(vocab_size: int) -> torch.dtype:
    """The dtype the streams are stored in: uint16 when every id fits (halves IMDB's 80 MB), int32 otherwise."""
    return torch.uint16 if vocab_size <= 1 << 16 else torch.int32


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
    dtype = stream_dtype(len(corpus.vocab))
    streams = save({name: stream.to(dtype).contiguous() for name, stream in corpus.streams.items()})
    write_file_atomically(root / STREAMS_FILE, streams)
    index = {"format": FORMAT, "settings": settings, "vocab": corpus.vocab.to_json(), "lines": corpus.lines,
             "stream_tokens": {name: stream.numel() for name, stream in corpus.streams.items()},
             "excluded": corpus.excluded, "data_sha256": corpus.sha256, "input_sha256": input_sha256,
             "streams_sha256": hashlib.sha256(streams).hexdigest()}
    write_file_atomically(root / INDEX_FILE, json.dumps(index, ensure_ascii=False).encode("utf-8"))


def load_corpus(root: str | Path, settings: dict[str, Any], files: list[str]) -> TokenisedCorpus | None:
    """The cached corpus in ``root`` if it was made with ``settings`` from ``files``; None if there is none yet.

    Raises:
        ConfigError: the cache was made with other settings, or it is damaged or was edited (a malformed index or
            vocabulary, a missing, extra or malformed stream, an id outside the vocabulary).
        DataError: the input files changed since the cache was made.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data.corpus_cache {str(root)!r} is a file, not a directory; point it at a directory")
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        return None
    index = _read_index(index_path)
    recorded = index["settings"]
    differences = sorted(key for key in {*recorded, *settings} if recorded.get(key) != settings.get(key))
    if differences:
        shown = "; ".join(f"{key}: cache {recorded.get(key)!r}, now {settings.get(key)!r}" for key in differences)
        raise ConfigError(f"data.corpus_cache {str(root)!r} was made with other data settings ({shown}); "
                          "point corpus_cache at another directory or delete this one")
    vocab = _read_vocab(index_path, index["vocab"])
    # the writer stores a test stream exactly when there is a test file (LMData._tokenise)
    names = {"train", "val", *(["test"] if settings.get("test_file") else [])}
    if set(index["stream_tokens"]) != names:
        raise _damaged(index_path, f"records the streams {sorted(index['stream_tokens'])}, these settings make "
                                   f"{sorted(names)}")
    present = [Path(name).is_file() for name in files]
    if all(present):
        if file_sha256(*files) != index["input_sha256"]:
            raise DataError(str(root), f"was made from other contents of {files}",
                            hint="delete the directory to tokenise the files as they are now")
    else:
        missing = [name for name, found in zip(files, present, strict=True) if not found]
        log.warning("corpus cache %s: input files %s are absent; using the tokens made from SHA-256 %s", root,
                    missing, index["input_sha256"])
    streams = _read_streams(root / STREAMS_FILE, index, vocab)
    return TokenisedCorpus(vocab, streams, index["lines"], index["excluded"], index["data_sha256"])


def _damaged(path: Path, problem: str) -> ConfigError:
    """The one-line error for a cache file that cannot be trusted: what is wrong with it, and how to rebuild it."""
    problem = " ".join(problem.split())  # library messages may span lines; the CLI prints one
    return ConfigError(f"corpus cache file {path} {problem}; delete the directory {path.parent} or point "
                       "data.corpus_cache at another one to tokenise the corpus again")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_counts(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_count(count) for count in value.values())


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


_FIELDS = {  # corpus.json's fields: how each is checked, and what it must be (for the message)
    "settings": (lambda value: isinstance(value, dict), "an object"),
    "vocab": (lambda value: isinstance(value, dict), "an object"),
    "lines": (_is_counts, "an object of line counts"),
    "stream_tokens": (_is_counts, "an object of token counts"),
    "excluded": (_is_count, "a count"),
    "data_sha256": (_is_sha256, "a SHA-256 hex digest"),
    "input_sha256": (_is_sha256, "a SHA-256 hex digest"),
    "streams_sha256": (_is_sha256, "a SHA-256 hex digest"),
}


def _read_index(path: Path) -> dict[str, Any]:
    """``corpus.json`` with every field present and of the right type (the vocabulary is checked on its own)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _damaged(path, f"cannot be read ({error.strerror or error})") from None
    try:
        index = json.loads(data.decode("utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise _damaged(path, f"is not valid JSON ({error})") from None
    if not isinstance(index, dict):
        raise _damaged(path, f"holds a JSON {type(index).__name__}, not the corpus index object")
    if index.get("format") != FORMAT:
        raise _damaged(path, f"has cache format {index.get('format')!r}, this toolkit reads {FORMAT}")
    wrong = [f"{key!r} must be {what}" for key, (check, what) in _FIELDS.items() if not check(index.get(key))]
    if wrong:
        raise _damaged(path, f"is not a valid corpus index: {', '.join(wrong)}")
    return index


def _read_vocab(path: Path, data: dict[str, Any]) -> Vocab:
    """The cached vocabulary: the language model's specials first, then unique strings."""
    tokens, specials = data.get("tokens"), data.get("specials")
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise _damaged(path, "has a vocabulary whose 'tokens' is not a list of strings")
    if specials != list(LM_SPECIALS) or tokens[: len(LM_SPECIALS)] != list(LM_SPECIALS):
        raise _damaged(path, f"has a vocabulary that does not start with the language model's {list(LM_SPECIALS)} "
                             f"(specials {specials!r}, first tokens {tokens[:2]!r})")
    repeated = [token for token, count in Counter(tokens).items() if count > 1]
    if repeated:
        shown = ", ".join(repr(token)[:40] for token in repeated[:3])
        raise _damaged(path, f"has a vocabulary with {len(repeated)} tokens listed more than once ({shown})")
    return Vocab(tokens, LM_SPECIALS)


def _read_streams(path: Path, index: dict[str, Any], vocab: Vocab) -> dict[str, torch.Tensor]:
    """The streams as ``[tokens]`` int64 ids, each checked for dtype, length and id range against ``vocab``.

    The bytes are read once, hashed, then parsed; the id check is one vectorised min/max per stream (milliseconds
    for IMDB's 20M tokens, against minutes of tokenising).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _damaged(path, f"is missing, though {INDEX_FILE} is there") from None
    except OSError as error:
        raise _damaged(path, f"cannot be read ({error.strerror or error})") from None
    if hashlib.sha256(data).hexdigest() != index["streams_sha256"]:
        raise _damaged(path, f"does not match the SHA-256 {INDEX_FILE} records (it was truncated, replaced or edited)")
    try:
        tensors = load(data)
    except (SafetensorError, KeyError) as error:  # KeyError: a dtype safetensors knows and torch does not
        raise _damaged(path, f"is not a readable safetensors file ({error})") from None
    lengths: dict[str, int] = index["stream_tokens"]
    missing, extra = sorted(set(lengths) - set(tensors)), sorted(set(tensors) - set(lengths))
    if missing or extra:
        parts = [f"lacks the streams {missing}" if missing else "", f"holds unknown tensors {extra}" if extra else ""]
        raise _damaged(path, " and ".join(part for part in parts if part))
    size, dtype = len(vocab), stream_dtype(len(vocab))
    streams = {}
    for name in sorted(lengths):
        tensor = tensors[name]
        if tensor.dtype != dtype:
            raise _damaged(path, f"stores {name!r} as {tensor.dtype}, not the {dtype} of a {size}-token vocabulary")
        if tensor.dim() != 1 or tensor.numel() != lengths[name]:
            raise _damaged(path, f"has {name!r} of shape {list(tensor.shape)}, {INDEX_FILE} records "
                                 f"[{lengths[name]}] tokens")
        ids = tensor.long()  # uint16 has no min/max kernels; the data module wants int64 anyway
        if ids.numel():
            low, high = (int(bound) for bound in torch.aminmax(ids))
            if low < 0 or high >= size:
                raise _damaged(path, f"has ids {low}..{high} in {name!r}, outside the vocabulary's 0..{size - 1}")
        streams[name] = ids
    return streams
