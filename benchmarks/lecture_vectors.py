"""Data side of ``benchmarks/lecture_imdb.py``: IMDB reviews → Lane-style frozen word-vector sequences.

Lane et al. (*Natural Language Processing in Action*, ch. 8/9) tokenise each review with NLTK's
``TreebankWordTokenizer``, look every token up in the GoogleNews word2vec vectors, *skip* tokens without a
vector, keep the first 400 of the rest and pad at the end with zero vectors. This module does the same,
but stores token ids into a frozen embedding matrix whose row 0 is the zero vector instead of a
``[N, 400, dim]`` float array (10 GB for 22.5k reviews at 300 d); the network sees identical inputs.

Vector sources: word2vec (300 d) trained here with gensim on the labelled training reviews minus the dev
split plus the unlabelled reviews (the GoogleNews vectors cannot be downloaded), cached in word2vec's
binary format (never pickle); or GloVe 6B 50d from the offline package, read by the toolkit's
:func:`toolkit.data.vectors.load_pretrained`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from toolkit.data.datamodule import carve_dev
from toolkit.data.readers import Example, read_labelled, read_records

if TYPE_CHECKING:  # gensim is imported only when word2vec is used (it takes a while to import)
    from gensim.models import KeyedVectors

DATA_DIR = Path(__file__).resolve().parents[2] / "shared/data/imdb"
CACHE_DIR = Path(__file__).resolve().parents[1] / "runs/lecture_imdb"
DEV_FRACTION = 0.1
SPLIT_SEED = 1234  # ClassifyData's split_seed default: dev = the reviews the toolkit is scored on
MAXLEN = 400
HTML_BREAK = re.compile(r"<br\s*/?\s*>", re.IGNORECASE)


# -- reading ---------------------------------------------------------------------------------------------

def labelled_split(data_dir: Path) -> tuple[list[Example], list[Example]]:
    """``(train, dev)``: the labelled training file in file order, split exactly as the toolkit splits it."""
    examples = read_labelled(data_dir / "train.jsonl.gz")
    return carve_dev(examples, DEV_FRACTION, SPLIT_SEED)


def unlabelled_texts(data_dir: Path) -> Iterator[str]:
    """The unlabelled reviews' texts (``label`` is null there, so ``read_labelled`` would reject them)."""
    for _, record in read_records(data_dir / "unsup.jsonl.gz"):
        yield record["text"]


# -- tokenisation -----------------------------------------------------------------------------------------

_FALLBACK_RULES = [  # a pared-down Penn Treebank tokenizer: NLTK's rules, in NLTK's order, minus rare cases
    (re.compile(r'^"'), "``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r'([ (\[{<])(")'), r"\1 `` "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"\.\.\."), " ... "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),  # only the text's final period
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> "),
    (re.compile(r"--"), " -- "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"(\S)('')"), r"\1 \2 "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
    *((re.compile(rf"(?i)\b({head})({tail})\b"), r" \1 \2 ")
      for head, tail in [("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"),
                         ("more", "'n"), ("wan", "na(?=\\s)"), ("'t", "is"),
                         ("'t", "was")]),
]


def _fallback_tokenize(text: str) -> list[str]:
    text = f" {text} "
    for pattern, replacement in _FALLBACK_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def make_tokenizer(keep_html: bool) -> tuple[Callable[[str], list[str]], str]:
    """``(tokenize, name)``: NLTK's ``TreebankWordTokenizer`` on the whole review, as Lane calls it.

    ``<br />`` tags become spaces unless ``keep_html``: Treebank splits each into four tokens
    (``<``, ``br``, ``/``, ``>``; ~6% of all tokens), which the GoogleNews vectors Lane used mostly lack
    but vectors trained on IMDB itself would learn, filling the 400-token budget with markup.
    Without NLTK, a regex approximation of the same rules is used and named ``fallback-regex``.
    """
    try:
        import nltk
        from nltk.tokenize import TreebankWordTokenizer

        split, name = TreebankWordTokenizer().tokenize, f"nltk-{nltk.__version__}-treebank"
    except ImportError:
        split, name = _fallback_tokenize, "fallback-regex-treebank"

    def tokenize(text: str) -> list[str]:
        return split(text if keep_html else HTML_BREAK.sub(" ", text))

    return tokenize, name + ("" if not keep_html else "+html")


# -- word2vec ---------------------------------------------------------------------------------------------

def stable_hash(text: str) -> int:
    """Seeds gensim's per-word initial vectors; Python's ``hash`` is salted per process (PYTHONHASHSEED)."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass
class Word2VecSettings:
    """gensim ``Word2Vec`` arguments: gensim 4's defaults except ``vector_size`` (GoogleNews' 300),
    ``hashfxn`` (reproducible) and ``workers`` (the thread budget)."""

    vector_size: int = 300
    sg: int = 0  # CBOW
    window: int = 5
    min_count: int = 5
    negative: int = 5
    hs: int = 0
    sample: float = 1e-3
    alpha: float = 0.025
    min_alpha: float = 1e-4
    epochs: int = 5
    seed: int = 1
    workers: int = 1
    max_final_vocab: int | None = None
    extra: dict = field(default_factory=dict)  # corpus description, part of the cache key only

    def gensim_kwargs(self) -> dict:
        kwargs = asdict(self)
        kwargs.pop("extra")
        return kwargs | {"hashfxn": stable_hash}


def _corpus_lines(texts: Iterable[str], tokenize: Callable[[str], list[str]], path: Path) -> dict:
    """Write one tokenised review per line (Treebank tokens never contain spaces); return corpus counts."""
    reviews = tokens = 0
    types: set[str] = set()
    with open(path, "w", encoding="utf-8") as handle:
        for text in texts:
            words = tokenize(text)
            if not words:
                continue
            handle.write(" ".join(words) + "\n")
            reviews += 1
            tokens += len(words)
            types.update(words)
    return {"reviews": reviews, "tokens": tokens, "types": len(types)}


def word2vec_vectors(texts: Iterable[str], tokenize: Callable[[str], list[str]], settings: Word2VecSettings,
                     cache_dir: Path = CACHE_DIR, log: Callable[[str], None] = print) -> tuple[KeyedVectors, dict]:
    """Train (or load from ``cache_dir``) word2vec on ``texts``.

    Returns:
        ``(KeyedVectors with [vocab, vector_size] vectors, info)``; ``info`` holds the settings, corpus
        counts (reviews, tokens, types), vocabulary size and the tokenising/training seconds.
    """
    from gensim.models import KeyedVectors, Word2Vec
    from gensim.models.word2vec import LineSentence

    key = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:12]
    vectors_path, info_path = cache_dir / f"word2vec_{key}.bin", cache_dir / f"word2vec_{key}.json"
    if vectors_path.is_file() and info_path.is_file():
        log(f"word2vec: cached {vectors_path}")
        info = json.loads(info_path.read_text()) | {"cached": True}
        return KeyedVectors.load_word2vec_format(str(vectors_path), binary=True), info
    cache_dir.mkdir(parents=True, exist_ok=True)
    corpus_path = cache_dir / f"corpus_{key}.{os.getpid()}.txt"
    try:
        started = time.perf_counter()
        corpus = _corpus_lines(texts, tokenize, corpus_path)
        tokenise_seconds = time.perf_counter() - started
        log(f"word2vec corpus: {corpus['reviews']} reviews, {corpus['tokens']} tokens ({tokenise_seconds:.0f}s)")
        started = time.perf_counter()
        # A streamed corpus: 72.5k reviews as Python string lists would take a few GB.
        model = Word2Vec(LineSentence(str(corpus_path)), **settings.gensim_kwargs())
        train_seconds = time.perf_counter() - started
    finally:
        corpus_path.unlink(missing_ok=True)
    keyed = model.wv
    info = {"settings": {k: v for k, v in asdict(settings).items() if k != "extra"} | {"hashfxn": "zlib.crc32"},
            "corpus": settings.extra | corpus, "vocabulary": len(keyed), "tokenise_seconds": round(tokenise_seconds, 1),
            "train_seconds": round(train_seconds, 1), "file": str(vectors_path)}
    temporary = vectors_path.with_suffix(f".tmp{os.getpid()}")
    keyed.save_word2vec_format(str(temporary), binary=True)  # word2vec's own format: no pickle
    os.replace(temporary, vectors_path)
    _write_json(info_path, info)
    log(f"word2vec: {len(keyed)} words × {keyed.vector_size} d in {train_seconds:.0f}s → {vectors_path}")
    return keyed, info | {"cached": False}


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


# -- lookup and vectorisation -----------------------------------------------------------------------------

def word2vec_lookup(keyed: KeyedVectors) -> Callable[[Sequence[str]], tuple[Tensor, Tensor]]:
    """Exact (cased) lookup, as Lane's ``word_vectors[token]`` in the cased GoogleNews vectors."""

    def lookup(types: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``types`` → ``(vectors [len(types), vector_size], found [len(types)] bool)``; missing rows zero."""
        found = torch.tensor([word in keyed.key_to_index for word in types], dtype=torch.bool)
        vectors = torch.zeros(len(types), keyed.vector_size)
        rows = [keyed.key_to_index[word] for word, hit in zip(types, found.tolist(), strict=True) if hit]
        vectors[found] = torch.from_numpy(np.asarray(keyed.vectors[rows], dtype=np.float32))
        return vectors, found

    return lookup


def glove_lookup(types: Sequence[str]) -> tuple[Tensor, Tensor]:
    """GloVe 6B 50d through the toolkit (exact, then lower-cased: GloVe is lower-case only)."""
    from toolkit.data.vectors import GLOVE_PACKAGE, load_pretrained

    vectors, found, _ = load_pretrained(GLOVE_PACKAGE, list(types), 50)
    return vectors, found


@dataclass
class Vectorised:
    """Reviews as ids into a frozen embedding matrix."""

    ids: dict[str, Tensor]
    """Split → ``[N, maxlen]`` int32 ids, 0 = padding (and only padding)."""
    labels: dict[str, Tensor]
    """Split → ``[N]`` float labels (1 = ``pos``)."""
    matrix: Tensor
    """``[V + 1, dim]``; row 0 is the zero vector Lane pads with."""
    stats: dict


def vectorise(splits: dict[str, list[Example]], tokenize: Callable[[str], list[str]],
              lookup: Callable[[Sequence[str]], tuple[Tensor, Tensor]], maxlen: int = MAXLEN) -> Vectorised:
    """Tokenise, drop tokens without a vector, keep the first ``maxlen``, pad at the end (Lane's ``pad_trunc``).

    Returns a :class:`Vectorised`; ``stats`` has, per split, the token coverage (share of tokens with a
    vector), type coverage, kept length and the share of reviews cut to ``maxlen``.
    """
    # Reviews as int32 type ids: millions of Python token strings would cost far more memory.
    type_id: dict[str, int] = {}
    coded = {
        name: [np.fromiter((type_id.setdefault(word, len(type_id)) for word in tokenize(example.text)),
                           dtype=np.int64) for example in examples]
        for name, examples in splits.items()
    }
    types = list(type_id)
    vectors, found = lookup(types)
    # Compact matrix: only the types that occur and have a vector (first-seen order, so ids are reproducible).
    kept = found.nonzero().squeeze(1)
    matrix = torch.cat([torch.zeros(1, vectors.size(1)), vectors[kept]])
    row_of = np.zeros(len(types), dtype=np.int64)
    row_of[kept.numpy()] = np.arange(1, len(kept) + 1)
    # Treebank splits only a review's *final* period: "movie." etc. need a vector of their own.
    period = np.array([len(word) > 1 and word.endswith(".") for word in types], dtype=bool)
    ids, labels, stats = {}, {}, {}
    for name, reviews in coded.items():
        block = torch.zeros(len(reviews), maxlen, dtype=torch.int32)
        total = hit = cut = empty = kept_tokens = period_words = 0
        for row, codes in enumerate(reviews):
            known = row_of[codes]
            known = known[known > 0]
            total += len(codes)
            hit += len(known)
            cut += len(known) > maxlen
            empty += len(known) == 0
            period_words += int(period[codes].sum())
            known = known[:maxlen]  # Lane keeps the start of the review
            kept_tokens += len(known)
            block[row, : len(known)] = torch.from_numpy(known.astype(np.int32))
        seen = np.unique(np.concatenate(reviews)) if reviews else np.zeros(0, dtype=np.int64)
        ids[name] = block
        labels[name] = torch.tensor([float(example.label == "pos") for example in splits[name]])
        stats[name] = {
            "reviews": len(reviews), "tokens": total, "tokens_with_vector": hit,
            "token_coverage": round(hit / max(total, 1), 4), "types": len(seen),
            "type_coverage": round(float((row_of[seen] > 0).mean()) if len(seen) else 0.0, 4),
            "mean_kept_length": round(kept_tokens / max(len(reviews), 1), 1),
            "share_cut_to_maxlen": round(cut / max(len(reviews), 1), 4),
            "reviews_without_vectors": empty,
            "share_period_attached_tokens": round(period_words / max(total, 1), 4),
        }
    return Vectorised(ids, labels, matrix, stats | {"embedding_rows": matrix.size(0), "dim": matrix.size(1)})
