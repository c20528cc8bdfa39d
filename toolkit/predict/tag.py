"""Tagger predictor: raw texts → entity spans with character offsets; token lists → tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.artifact import ModelDir
from toolkit.config import config_from_dict
from toolkit.data.conll import ColumnFormat, read_conll
from toolkit.data.tagging_features import FeatureSettings, TaggingFeaturizer
from toolkit.data.tagschemes import allowed_transitions, convert, detect_scheme, spans_from_tags, split_tag
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, DataError, InputError, ModelDirError
from toolkit.metrics import entity_scores
from toolkit.nn.tagger import SequenceTaggerNet, TaggerConfig
from toolkit.predict.base import Predictor, check_texts
from toolkit.predict.pipelining import prefetched_windows, sorted_batches


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

    def to_dict(self) -> dict:
        return {"entities": [asdict(entity) for entity in self.entities], "tokens": self.tokens, "tags": self.tags}


@dataclass(frozen=True)
class TaggedTokens:
    """Tags of a pre-tokenised sentence and entity spans over token indices."""

    tags: list[str]
    spans: list[tuple[int, int, str, float]]
    """``(token_start, token_end, label, confidence)``."""


class TaggerPredictor(Predictor):
    """Encodes sentences like the training DataModule, decodes with constrained Viterbi."""

    task = "tag"

    def __init__(self, model_dir: ModelDir, device: torch.device) -> None:
        super().__init__(model_dir, device)
        meta, model_config = self.meta, self.meta["model_config"]
        try:
            config = config_from_dict(TaggerConfig, model_config["network"], "meta.json model_config.network")
            settings = meta["tokenizer"]
            self.scheme, self.input_scheme = model_config["scheme"], model_config["input_scheme"]
            transformer = str(model_dir.path / "transformer") if model_config.get("transformer") else None
            self.featurizer = TaggingFeaturizer(
                Vocab.from_json(model_dir.json_file("vocab.json")), Vocab.from_json(model_dir.json_file("chars.json")),
                config_from_dict(FeatureSettings, {k: settings[k] for k in ("lowercase_words", "max_word_chars")}),
                transformer)
            sizes = model_config["vocab_size"], model_config["num_chars"]
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise ModelDirError(f"{model_dir.path}: meta.json is inconsistent ({error!r})") from None
        if (len(self.featurizer.words), len(self.featurizer.chars)) != sizes:
            raise ModelDirError(f"{model_dir.path}: vocab.json/chars.json do not match the sizes in meta.json")
        self.featurizer.use_chars = config.chars != "none"
        self.tags = self.labels
        self.net = SequenceTaggerNet(config, *sizes, len(self.tags), allowed_transitions(self.tags, self.scheme),
                                     transformer, load_transformer_weights=False)
        self.load_weights(self.net, model_dir)
        self.net.to(device).eval()
        self._tokenizer_settings = TokenizerSettings(lang=settings.get("lang", "en"), lowercase=False)
        self._tokenizer: Tokenizer | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """spaCy's rule-based tokenizer for raw text (built on first use: token-list tagging needs no spaCy)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self._tokenizer_settings)
        return self._tokenizer

    @property
    def entity_types(self) -> list[str]:
        return sorted({tag[2:] for tag in self.tags if tag != "O"})

    @torch.inference_mode()
    def tag_tokens(self, sentences: Sequence[Sequence[str]], batch_size: int = 32,
                   with_confidence: bool = True) -> list[TaggedTokens]:
        """Tag pre-tokenised sentences; tags come back in the training data's scheme (e.g. IOB1 for CoNLL).

        ``with_confidence=False`` skips the CRF forward–backward pass (span confidences are then NaN).
        """
        for position, tokens in enumerate(sentences):
            if not tokens:
                raise InputError(f"sentence {position} has no tokens")
        results: list[TaggedTokens | None] = [None] * len(sentences)
        for indices, encoded in prefetched_windows(sentences, self.featurizer.encode_many, max(256, 4 * batch_size)):
            lengths = [len(item["words"]) for item in encoded]
            for positions, batch_indices in sorted_batches(indices, lengths, batch_size):
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
                    results[index] = TaggedTokens(convert(tags, self.scheme, self.input_scheme), spans)
        return results

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[TagPrediction]:
        """Entities with character offsets for raw texts (tokenised with spaCy's rule-based tokenizer)."""
        texts = check_texts(texts)
        token_spans = [self.tokenizer.spans(text) for text in texts]
        # A text of markup only (e.g. "<br />") has no tokens and so no entities.
        nonempty = [i for i, spans in enumerate(token_spans) if spans]
        tagged: list[TaggedTokens] = [TaggedTokens([], [])] * len(texts)
        for index, result in zip(nonempty, self.tag_tokens(
                [[token for token, _, _ in token_spans[i]] for i in nonempty], batch_size), strict=True):
            tagged[index] = result
        results = []
        for text, spans, result in zip(texts, token_spans, tagged, strict=True):
            entities = [Entity(text[spans[start][1]:spans[end - 1][2]], kind, spans[start][1], spans[end - 1][2],
                               round(confidence, 6), start, end) for start, end, kind, confidence in result.spans]
            results.append(TagPrediction([token for token, _, _ in spans], result.tags, entities))
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
        predicted = self.tag_tokens([sentence.tokens for sentence in sentences], batch_size, with_confidence=False)
        gold = [sentence.tags for sentence in sentences]
        return {**entity_scores(gold, [p.tags for p in predicted], self.input_scheme), "sentences": len(sentences),
                "scheme": self.input_scheme}
