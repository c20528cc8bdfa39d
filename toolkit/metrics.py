"""Every score the toolkit reports, defined once: training (validation each epoch) and ``bilstm evaluate`` both use
these functions, so a model's dev figure in training and in evaluation is the same computation.

* classification: accuracy and macro-F1 (torchmetrics; its metric objects sum their states over DDP ranks);
* entities: seqeval precision/recall/F1, strict matching in the data's tag scheme;
* translation: sacreBLEU BLEU and chrF (cased, detokenised);
* language models: perplexity, cross-entropy in nats and bits per token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def classification_metrics(num_labels: int, prefix: str = "") -> Any:
    """``acc`` (micro accuracy) and ``macro_f1`` as a torchmetrics ``MetricCollection`` (stateful, DDP-synced)."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

    return MetricCollection({"acc": MulticlassAccuracy(num_labels, average="micro"),
                             "macro_f1": MulticlassF1Score(num_labels, average="macro")}, prefix=prefix)


def classification_scores(predicted: torch.Tensor, target: torch.Tensor, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1 of predicted class ids against gold ids (``bilstm evaluate``)."""
    from torchmetrics.functional.classification import multiclass_f1_score

    collection = classification_metrics(len(labels))
    collection.update(predicted, target)
    scores = collection.compute()
    per_class = multiclass_f1_score(predicted, target, len(labels), average="none").tolist()
    return {"accuracy": round(scores["acc"].item(), 6), "macro_f1": round(scores["macro_f1"].item(), 6),
            "n": len(target), "per_class_f1": {label: round(value, 6) for label, value in zip(labels, per_class,
                                                                                                  strict=True)}}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], scheme: str) -> dict[str, Any]:
    """Overall and per-type precision/recall/F1 (fractions) and entity counts.

    Args:
        gold: gold tag sequences.
        predicted: predicted tag sequences (same lengths).
        scheme: ``iob1``, ``iob2`` or ``bioes`` (seqeval's IOB1 / IOB2 / IOBES in strict mode).
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB1, IOB2, IOBES

    scheme_class = {"iob1": IOB1, "iob2": IOB2, "bioes": IOBES}[scheme]
    report = classification_report(gold, predicted, mode="strict", scheme=scheme_class, output_dict=True,
                                   zero_division=0)
    overall = report["micro avg"]
    types = {name: {"precision": round(float(row["precision"]), 6), "recall": round(float(row["recall"]), 6),
                    "f1": round(float(row["f1-score"]), 6), "support": int(row["support"])}
             for name, row in report.items() if not name.endswith(" avg")}
    return {"precision": round(float(overall["precision"]), 6), "recall": round(float(overall["recall"]), 6),
            "f1": round(float(overall["f1-score"]), 6), "entities": int(overall["support"]), "per_type": types}


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF (sacreBLEU defaults: 13a tokenisation, cased) with their signatures."""
    import sacrebleu

    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
    bleu = bleu_metric.corpus_score(list(hypotheses), [list(references)])
    chrf = chrf_metric.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": bleu.score, "chrf": chrf.score,
            "bleu_details": bleu.format(signature=str(bleu_metric.get_signature())),
            "chrf_signature": str(chrf_metric.get_signature())}


def perplexity_scores(nll: float, tokens: int) -> dict[str, Any]:
    """Perplexity, cross-entropy (nats and bits per token) from a summed negative log-likelihood (natural log)."""
    if tokens < 1:
        raise ValueError("perplexity needs at least one token")
    cross_entropy = nll / tokens
    return {"perplexity": round(math.exp(min(cross_entropy, 700.0)), 4), "cross_entropy_nats": round(cross_entropy, 6),
            "bits_per_token": round(cross_entropy / math.log(2), 6), "tokens": tokens}
