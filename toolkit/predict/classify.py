"""Classifier predictor: texts → label and class probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toolkit.artifact import ModelDir
from toolkit.config import config_from_dict
from toolkit.data.batching import length_sorted_batches, pad_ids
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, ModelDirError
from toolkit.nn.classifier import ClassifierConfig, TextClassifierNet
from toolkit.predict.base import Predictor, check_texts


@dataclass(frozen=True)
class ClassPrediction:
    """One text's predicted label, its probability, and every class's probability."""

    label: str
    score: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "probabilities": self.probabilities}


class ClassifierPredictor(Predictor):
    """Tokenise → ids → encode → pool → softmax, in length-sorted batches under ``inference_mode``."""

    task = "classify"

    def __init__(self, model_dir: ModelDir, device: torch.device) -> None:
        super().__init__(model_dir, device)
        meta = self.meta
        try:
            config = config_from_dict(ClassifierConfig, meta["model_config"]["network"], "meta.json model_config.network")
            self.tokenizer = Tokenizer(config_from_dict(TokenizerSettings, meta["tokenizer"], "meta.json tokenizer"))
            self.vocab = Vocab.from_json(model_dir.json_file("vocab.json"))
            vocab_size, num_labels = meta["model_config"]["vocab_size"], meta["model_config"]["num_labels"]
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise ModelDirError(f"{model_dir.path}: meta.json or vocab.json is inconsistent ({error})") from None
        if len(self.vocab) != vocab_size or len(self.labels) != num_labels:
            raise ModelDirError(f"{model_dir.path}: vocab.json/labels do not match the sizes in meta.json")
        self.net = TextClassifierNet(config, vocab_size, num_labels)
        self.load_weights(self.net, model_dir)
        self.net.to(device).eval()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts → token ids (a text whose tokens are all markup becomes one unknown token)."""
        return [self.vocab.encode(tokens) or [Vocab.unk_index] for tokens in self.tokenizer.tokenize_many(texts)]

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``[len(texts), num_labels]`` (CPU, float32), in input order."""
        texts = check_texts(texts)
        ids = self.encode(texts)
        probabilities = torch.empty(len(ids), len(self.labels))
        for batch in length_sorted_batches([len(seq) for seq in ids], batch_size):
            padded, lengths = pad_ids([ids[i] for i in batch])
            logits = self.net(padded.to(self.device, non_blocking=True), lengths)
            probabilities[batch] = torch.softmax(logits.float(), dim=-1).cpu()
        return probabilities

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[ClassPrediction]:
        """Each text's label and class probabilities, in input order."""
        probabilities = self.predict_proba(texts, batch_size)
        results = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(ClassPrediction(self.labels[best], row[best], dict(zip(self.labels, row, strict=True))))
        return results
