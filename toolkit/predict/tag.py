"""Tagger predictor: raw texts → entity spans with character offsets; token lists → tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.data.batching import sorted_batches
from toolkit.data.conll import ColumnFormat, read_conll
from toolkit.data.tag_features import Context, TaggingFeaturizer, document_contexts
from toolkit.data.tagschemes import convert, detect_scheme, spans_from_tags, split_tag
from toolkit.data.textrules import SURROGATE, excerpt, text_problem
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.errors import DataError, InputError
from toolkit.metrics import entity_scores
from toolkit.predict.base import TaskPredictor
from toolkit.predict.prefetch import prefetched_windows
from toolkit.specs.base import Opened


@dataclass(frozen=True)
class Entity:
    """A predicted entity: its text, type, character span in the input and confidence."""

    text: str
    label: str
    start: int
    end: int
    confidence: float
    """Mean CRF marginal probability of the entity's predicted tags (softmax probability without a CRF)."""
    token_start: int
    token_end: int


@dataclass(frozen=True)
class TagPrediction:
    """Tokens, their tags (in the training data's scheme) and the entities of one text."""

    tokens: list[str]
    tags: list[str]
    entities: list[Entity]
    input_truncated: bool = False
    """The text was over the length limit and only its start was tagged (``truncate=True``)."""

    def to_dict(self) -> dict:
        """JSON-able form; ``input_truncated`` only appears when true."""
        result: dict[str, Any] = {"entities": [asdict(entity) for entity in self.entities], "tokens": self.tokens,
                                  "tags": self.tags}
        if self.input_truncated:
            result["input_truncated"] = True
        return result


@dataclass(frozen=True)
class TaggedTokens:
    """Tags of a pre-tokenised sentence and entity spans over token indices."""

    tags: list[str]
    spans: list[tuple[int, int, str, float]]
    """``(token_start, token_end, label, confidence)``."""
    truncated: bool = False
    """The sentence was over the length limit: tokens past it were not read and are tagged ``O``."""


PREDICT_SLICE = 1 << 20
"""Characters of raw text tokenised and tagged together by :meth:`TagPredictor.predict` (memory bound)."""
TOKENS_PER_TEXT = 256
"""A tagger batch holds at most ``batch_size × 256`` padded tokens (half the default): each token carries up to
30 characters through the character encoder, so long texts need smaller batches than a classifier's."""
SENTENCE_WINDOW_TOKENS = 1 << 16
"""Tokens encoded per prefetch window (words, casing and up to 30 characters each): ~4,500 CoNLL sentences."""


class TagPredictor(TaskPredictor):
    """Encodes sentences like the training DataModule, decodes with constrained Viterbi."""

    task = "tag"

    def onnx_refusal(self) -> str | None:
        """What keeps this tagger from exporting: its transformer or LM features, or a character BiLSTM."""
        if getattr(self.config, "transformer", False):
            return "ONNX export of taggers with transformer features is not built"
        if self.config.language_models():
            return "ONNX export of taggers with LM features (data.lm_forward/lm_backward) is not built"
        if self.config.network.chars == "lstm":
            return ("ONNX export covers taggers with character CNNs ('cnn') or no character features, not the "
                    "character BiLSTM")
        return None

    def __init__(self, opened: Opened, device: torch.device) -> None:
        super().__init__(opened, device)
        config, files = opened.config, opened.side
        self.scheme, self.input_scheme = config.scheme, config.input_scheme
        self.featurizer = TaggingFeaturizer(files.words, files.chars, opened.tokenizer, files.transformer,
                                            files.lm_vocabs)
        self.featurizer.use_chars = config.network.chars != "none"
        self.tags = self.labels
        self.net = opened.spec.load_net(opened.model_dir, config, transformer_path=files.transformer).to(device)
        self._tokenizer_settings = TokenizerSettings(lang=opened.tokenizer.lang, lowercase=False)
        self._tokenizer: Tokenizer | None = None

    def use_onnx(self, int8: bool, threads: int) -> None:
        """Tag scores from ONNX Runtime (``model.onnx``); the CRF decodes them in torch as before."""
        from toolkit.predict.onnx_backend import OnnxTaggerNet

        torch_net = self.net
        super().use_onnx(int8, threads)
        self.net = OnnxTaggerNet(self.net, torch_net)

    @property
    def tokenizer(self) -> Tokenizer:
        """spaCy's rule-based tokenizer for raw text (built on first use: token-list tagging needs no spaCy)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self._tokenizer_settings)
        return self._tokenizer

    @property
    def entity_types(self) -> list[str]:
        return sorted({tag[2:] for tag in self.tags if tag != "O"})

    @property
    def context_tokens(self) -> int:
        """The document-context window the model was trained with (0: none; meta.json ``tokenizer``)."""
        return self.featurizer.settings.context_tokens

    def tag_tokens(self, sentences: Sequence[Sequence[str]], batch_size: int = 32,
                   with_confidence: bool = True, contexts: Sequence[Context] | None = None,
                   documents: Sequence[int] | None = None) -> list[TaggedTokens]:
        """Tag pre-tokenised sentences; tags come back in the training data's scheme (e.g. IOB1 for CoNLL).

        ``with_confidence=False`` skips the CRF forward–backward pass (span confidences are then NaN).
        A model trained with document context (``context_tokens`` > 0) reads each sentence between the tokens of
        ``contexts`` (``(before, after)`` per sentence), or, given ``documents`` (each sentence's document
        number), between its neighbours here in the same document; with neither, every sentence alone.
        A sentence longer than ``max_chars`` (its tokens joined by spaces) is refused, or with ``truncate``
        tagged up to the limit (the rest ``O``, ``truncated`` set).

        Raises:
            InputError: naming the first sentence that is empty, not a list of strings, or too long.
        """
        if isinstance(sentences, str):
            raise InputError("tag_tokens() takes a list of token lists, e.g. [['Peter', 'visited', 'Bonn']]")
        sentences = [list(tokens) for tokens in sentences]
        read = []
        for position, tokens in enumerate(sentences):
            try:
                read.append(tokens[: self._tokens_read(tokens)])
            except ValueError as error:
                raise InputError(f"sentence {position} {error}") from None
        if contexts is None and documents is not None and self.context_tokens:
            contexts = document_contexts(read, documents, self.context_tokens)
        if contexts is not None:
            contexts = [_context(pair, position) for position, pair in enumerate(contexts)]
            if len(contexts) != len(read):
                raise InputError(f"{len(read)} sentences but {len(contexts)} contexts: give one (before, after) "
                                 "pair of token lists per sentence")
        return self._tag(read, [len(tokens) for tokens in sentences], batch_size, with_confidence, contexts)

    @torch.inference_mode()
    def _tag(self, read: list[list[str]], sentence_lengths: list[int], batch_size: int,
             with_confidence: bool, contexts: list[Context] | None = None) -> list[TaggedTokens]:
        """Tag the tokens ``read`` of each sentence; ``sentence_lengths`` count the whole sentences' tokens
        (those past the ones read are tagged ``O``)."""
        results: list[TaggedTokens | None] = [None] * len(read)
        if contexts is None or not self.context_tokens:
            inputs, encode = read, self.featurizer.encode_many
        else:  # each sentence travels with its context through the prefetching windows
            inputs = [_InContext(tokens, context) for tokens, context in zip(read, contexts, strict=True)]

            def encode(sentences: list[_InContext]) -> list[dict]:
                return self.featurizer.encode_many(sentences, [sentence.context for sentence in sentences])
        for indices, encoded in prefetched_windows(inputs, encode, max(256, 4 * batch_size),
                                                   max_size=SENTENCE_WINDOW_TOKENS):
            lengths = [len(item["words"]) for item in encoded]
            for positions, batch_indices in sorted_batches(indices, lengths, batch_size,
                                                           batch_size * TOKENS_PER_TEXT):
                batch = {key: value.to(self.device, non_blocking=True)
                         for key, value in self.featurizer.collate([encoded[k] for k in positions]).items()}
                paths, marginals = self.net.decode(self.net(batch), batch, with_marginals=with_confidence)
                for row, (index, path) in enumerate(zip(batch_indices, paths, strict=True)):
                    if marginals is None:
                        confidence = [float("nan")] * len(path)
                    else:
                        chosen = torch.tensor(path, device=marginals.device)
                        confidence = marginals[row, torch.arange(len(path), device=marginals.device), chosen].tolist()
                    tags = [self.tags[i] for i in path]
                    spans = [(start, end, kind, sum(confidence[start:end]) / (end - start))
                             for start, end, kind in spans_from_tags(tags, self.scheme)]
                    unread = sentence_lengths[index] - len(path)
                    results[index] = TaggedTokens(convert(tags, self.scheme, self.input_scheme) + ["O"] * unread,
                                                  spans, unread > 0)
        return results

    def _tokens_read(self, tokens: list[Any]) -> int:
        """How many of a sentence's tokens the model reads (all, unless over ``max_chars`` with ``truncate``).

        Raises:
            ValueError: why the sentence cannot be tagged.
        """
        if not tokens:
            raise ValueError("has no tokens")
        for token in tokens:
            if not isinstance(token, str) or SURROGATE.search(token):
                raise ValueError(f"has a token {excerpt(str(token))} that {text_problem(token)}")
        length = sum(map(len, tokens)) + len(tokens) - 1
        if length <= self.max_chars:
            return len(tokens)
        if not self.truncate:
            raise ValueError(f"is {length} characters long (tokens joined by spaces), over the limit of "
                             f"{self.max_chars}; split it, raise the limit (max_chars, --max-chars) or cut it "
                             "(truncate=True, --truncate: only its start is tagged)")
        total = -1
        for count, token in enumerate(tokens):
            total += len(token) + 1
            if total > self.max_chars:
                return max(count, 1)
        return len(tokens)

    def tokens_problem(self, tokens: Sequence[str]) -> str | None:
        """Why :meth:`tag_tokens` would refuse this sentence, or None (what a batch job records)."""
        try:
            self._tokens_read(list(tokens))
        except ValueError as error:
            return f"sentence {error}"
        return None

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[TagPrediction]:
        """Entities with character offsets for raw texts (tokenised with spaCy's rule-based tokenizer)."""
        read, cut = self.model_texts(texts)
        texts = list(texts)
        results: list[TagPrediction] = []
        # In slices of at most PREDICT_SLICE characters: a text's token spans are held only until its slice is
        # tagged, so thousands of long texts never sit tokenised all at once.
        start = 0
        while start < len(read):
            end, size = start, 0
            while end < len(read) and (end == start or size + len(read[end]) <= PREDICT_SLICE):
                size += len(read[end])
                end += 1
            results += self._predict_slice(texts[start:end], read[start:end], cut[start:end], batch_size)
            start = end
        return results

    def _predict_slice(self, texts: list[str], read: list[str], cut: list[bool],
                       batch_size: int) -> list[TagPrediction]:
        token_spans = [self.tokenizer.spans(text) for text in read]
        # A text of markup only (e.g. "<br />") has no tokens and so no entities.
        nonempty = [i for i, spans in enumerate(token_spans) if spans]
        tagged: list[TaggedTokens] = [TaggedTokens([], [])] * len(texts)
        tokens = [[token for token, _, _ in token_spans[i]] for i in nonempty]
        # The text's length was checked above; its tokens are read whole.
        for index, result in zip(nonempty, self._tag(tokens, [len(t) for t in tokens], batch_size, True),
                                 strict=True):
            tagged[index] = result
        results = []
        for text, spans, result, was_cut in zip(texts, token_spans, tagged, cut, strict=True):
            entities = [Entity(text[spans[start][1]:spans[end - 1][2]], kind, spans[start][1], spans[end - 1][2],
                               round(confidence, 6), start, end) for start, end, kind, confidence in result.spans]
            results.append(TagPrediction([token for token, _, _ in spans], result.tags, entities, was_cut))
        return results

    def _check_gold_tags(self, sentences: Sequence[Any], data_file: str | Path) -> None:
        """Refuse gold tags the scores would silently misread: unknown entity types or another tag scheme."""
        known = set(self.entity_types)
        for sentence in sentences:
            unknown = sorted({split_tag(tag)[1] for tag in sentence.tags} - known - {""})
            if unknown:
                raise DataError(data_file, f"entity type {unknown[0]!r} is not one this model tags "
                                f"({', '.join(sorted(known))})", sentence.first_line)
        found = detect_scheme([sentence.tags for sentence in sentences])
        bioes_clash = (found == "bioes") != (self.input_scheme == "bioes")
        if bioes_clash or (found == "iob1" and self.input_scheme != "iob1"):
            raise DataError(data_file, f"tags look like {found.upper()} but the model reads and writes "
                            f"{self.input_scheme.upper()}", hint="convert the file, or train a model on this scheme")

    def evaluate(self, data_file: str | Path, batch_size: int = 64, token_column: int = 0, tag_column: int = -1,
                 **_: Any) -> dict[str, Any]:
        """seqeval entity precision/recall/F1 (strict, in the file's scheme) on a column file."""
        sentences = read_conll(data_file, ColumnFormat(token_column, tag_column))
        self._check_gold_tags(sentences, data_file)
        for sentence in sentences:
            problem = self.tokens_problem(sentence.tokens)
            if problem is not None:
                raise DataError(data_file, problem, sentence.first_line)
        predicted = self.tag_tokens([sentence.tokens for sentence in sentences], batch_size, with_confidence=False,
                                    documents=[sentence.document for sentence in sentences])
        gold = [sentence.tags for sentence in sentences]
        return {**entity_scores(gold, [p.tags for p in predicted], self.input_scheme), "sentences": len(sentences),
                "scheme": self.input_scheme}


class _InContext(list):
    """A sentence's tokens with its document context attached (its ``len`` stays its token count, which the
    prefetching windows sort and size by)."""

    def __init__(self, tokens: list[str], context: Context) -> None:
        super().__init__(tokens)
        self.context = context


def _context(pair: Any, position: int) -> Context:
    """A caller's ``(before, after)`` token lists, checked (strings only: they reach the subword tokenizer)."""
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        raise InputError(f"context {position} must be a (before, after) pair of token lists")
    for side in pair:
        if isinstance(side, str) or not isinstance(side, Sequence) or not all(
                isinstance(token, str) and token and not SURROGATE.search(token) for token in side):
            raise InputError(f"context {position} must hold lists of non-empty tokens (str, no lone surrogates)")
    return list(pair[0]), list(pair[1])
