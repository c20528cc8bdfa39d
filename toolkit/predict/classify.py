"""Classifier predictor: texts → label and class probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.data.batching import pad_ids, sorted_batches
from toolkit.data.readers import check_labels, read_labelled
from toolkit.data.tokenize import Tokenizer
from toolkit.data.vocab import Vocab
from toolkit.metrics import classification_scores
from toolkit.predict.base import TaskPredictor
from toolkit.predict.prefetch import prefetched_windows
from toolkit.specs.base import Opened


@dataclass(frozen=True)
class ClassPrediction:
    """One text's predicted label, its probability, and every class's probability."""

    label: str
    score: float
    probabilities: dict[str, float]
    input_truncated: bool = False
    """The text was over the length limit and cut before the model read it (``truncate=True``)."""

    def to_dict(self) -> dict:
        """JSON-able form; ``input_truncated`` only appears when true."""
        result: dict[str, Any] = {"label": self.label, "score": self.score, "probabilities": self.probabilities}
        if self.input_truncated:
            result["input_truncated"] = True
        return result


class ClassifyPredictor(TaskPredictor):
    """Tokenise → ids → encode → pool → softmax, in length-sorted batches under ``inference_mode``."""

    task = "classify"
    def __init__(self, opened: Opened, device: torch.device) -> None:
        super().__init__(opened, device)
        self.tokenizer = Tokenizer(opened.tokenizer)
        self.vocab: Vocab = opened.side
        self.net = opened.spec.load_net(opened.model_dir, opened.config).to(device)

    def clip(self, text: str) -> str:
        """Only the part of a long text holding the tokens the model keeps (``max_tokens``): lossless."""
        return self.tokenizer.clip(text)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts → token ids (a text whose tokens are all markup becomes one unknown token)."""
        return [self.vocab.encode(tokens) or [Vocab.unk_index] for tokens in self.tokenizer.tokenize_many(texts)]

    @torch.inference_mode()
    def _probabilities(self, texts: Sequence[str], batch_size: int) -> tuple[torch.Tensor, list[bool]]:
        read, cut = self.model_texts(texts)
        probabilities = torch.empty(len(read), len(self.labels))
        for indices, ids in prefetched_windows(read, self.encode, window=max(256, 4 * batch_size)):
            for positions, batch in sorted_batches(indices, [len(seq) for seq in ids], batch_size):
                padded, lengths = pad_ids([ids[k] for k in positions])
                logits = self.net(padded.to(self.device, non_blocking=True), lengths)
                probabilities[batch] = torch.softmax(logits.float(), dim=-1).cpu()
        return probabilities, cut

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``[len(texts), num_labels]`` (CPU, float32), in input order."""
        return self._probabilities(texts, batch_size)[0]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[ClassPrediction]:
        """Each text's label and class probabilities, in input order."""
        probabilities, cut = self._probabilities(texts, batch_size)
        results = []
        for row, was_cut in zip(probabilities.tolist(), cut, strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            results.append(ClassPrediction(self.labels[best], row[best], dict(zip(self.labels, row, strict=True)),
                                           was_cut))
        return results

    def evaluate(self, data_file: str | Path, text_field: str = "text", label_field: str = "label",
                 batch_size: int = 64, **_: Any) -> dict[str, Any]:
        """Accuracy, macro-F1 (torchmetrics) and per-class F1 on a JSONL/CSV file of labelled texts."""
        examples = read_labelled(data_file, text_field, label_field)
        check_labels(examples, self.labels, data_file)
        self.refuse_unusable(data_file, [(example.line, example.text) for example in examples])
        index = {label: i for i, label in enumerate(self.labels)}
        target = torch.tensor([index[example.label] for example in examples])
        predicted = self.predict_proba([example.text for example in examples], batch_size).argmax(-1)
        return classification_scores(predicted, target, self.labels)
