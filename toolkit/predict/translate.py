"""Translator predictor: source texts → detokenised translations (greedy or beam search).

The predictor holds only the network and the tokenizers; every call builds its own decoder state, so
one instance can serve concurrent requests (torch releases the GIL in its kernels).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from toolkit.data.batching import pad_ids, sorted_batches
from toolkit.data.bitext import read_bitext
from toolkit.errors import InputError
from toolkit.metrics import translation_scores
from toolkit.nn.beam import DecodingConfig
from toolkit.predict.base import TaskPredictor
from toolkit.specs.base import Opened


@dataclass(frozen=True)
class Translation:
    """One source text's translation.

    ``attention`` (only when asked for) has one row per output subword (``</s>`` last, when produced)
    and one column per source subword; ``source_tokens``/``target_tokens`` label its axes.
    """

    source: str
    translation: str
    score: float
    attention: list[list[float]] | None = None
    source_tokens: list[str] | None = None
    target_tokens: list[str] | None = None
    truncated: bool = False
    """The output reached the length limit (``DecodingConfig.max_length…``) before ending: it is cut short."""
    input_truncated: bool = False
    """The source was over the length limit and only its start was translated (``truncate=True``)."""

    def to_dict(self) -> dict:
        """JSON-able form; ``truncated`` only appears when true, attention only when asked for."""
        result: dict[str, Any] = {"source": self.source, "translation": self.translation, "score": self.score}
        if self.truncated:
            result["truncated"] = True
        if self.input_truncated:
            result["input_truncated"] = True
        if self.attention is not None:
            result.update(attention=self.attention, source_tokens=self.source_tokens, target_tokens=self.target_tokens)
        return result


@dataclass(frozen=True)
class TranslateOptions:
    """What one request may ask of :meth:`TranslatePredictor.predict` beyond its texts (the task table's
    ``options``: the HTTP ``/translate`` body takes these fields too)."""

    attention: bool = field(default=False, metadata={
        "argument": "return_attention", "adds": ("attention", "source_tokens", "target_tokens"),
        "description": "also return the attention weights (one row per output subword, one column per source "
                       "subword) and the subwords of both sides; computed without batching"})


class TranslatePredictor(TaskPredictor):
    """Subword-encode → encode → greedy/beam search → detokenise, in length-sorted batches."""

    task = "translate"
    def use_onnx(self, int8: bool, threads: int) -> None:
        """Encoder and decoder step from ONNX Runtime (``encoder.onnx``, ``decoder_step.onnx``); the search in torch."""
        from toolkit.predict.onnx_backend import onnx_translator

        self.net = onnx_translator(self, int8, threads)

    def __init__(self, opened: Opened, device: torch.device) -> None:
        super().__init__(opened, device)
        self.decoding = opened.config.decoding
        self.source_tokenizer, self.target_tokenizer = opened.side
        self.source_lang, self.target_lang = opened.tokenizer.source_lang, opened.tokenizer.target_lang
        self.net = opened.spec.load_net(opened.model_dir, opened.config).to(device)

    def _decoding(self, beam_size: int | None, length_penalty: float | None) -> DecodingConfig:
        changes = {k: v for k, v in (("beam_size", beam_size), ("length_penalty", length_penalty)) if v is not None}
        decoding = replace(self.decoding, **changes)
        try:
            decoding.validate()
        except ValueError as error:
            raise InputError(str(error)) from None
        return decoding

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], batch_size: int = 64, beam_size: int | None = 5,
                return_attention: bool = False, length_penalty: float | None = None) -> list[Translation]:
        """Translate each text; results in input order.

        Args:
            texts: source sentences (non-blank strings).
            batch_size: sentences decoded together (each with ``beam_size`` hypotheses).
            beam_size: 1 = greedy; None = the model's default.
            return_attention: add attention weights and the subword tokens of both sides.
            length_penalty: α of the length normalisation; None = the model's default.
        """
        read, cut = self.model_texts(texts)
        texts = list(texts)
        decoding = self._decoding(beam_size, length_penalty)
        ids = self.source_tokenizer.encode(read)
        results: list[Translation | None] = [None] * len(texts)
        for _, batch in sorted_batches(list(range(len(ids))), [len(seq) for seq in ids], batch_size):
            source, lengths = pad_ids([ids[i] for i in batch])
            hypotheses = self.net.translate(source.to(self.device), lengths.to(self.device), decoding,
                                            return_attention=return_attention)
            outputs = self.target_tokenizer.decode([h.tokens for h in hypotheses])
            for index, hypothesis, output in zip(batch, hypotheses, outputs, strict=True):
                extra = {}
                if return_attention:
                    target = hypothesis.tokens + ([self.net.eos] if len(hypothesis.attention) > len(hypothesis.tokens)
                                                  else [])
                    extra = {"attention": [[round(w, 5) for w in row] for row in hypothesis.attention.tolist()],
                             "source_tokens": self.source_tokenizer.tokens(ids[index]),
                             "target_tokens": self.target_tokenizer.tokens(target)}
                results[index] = Translation(texts[index], output, round(hypothesis.score, 6), **extra,
                                             truncated=hypothesis.truncated, input_truncated=cut[index])
        return results

    def evaluate(self, data_file: str | Path, batch_size: int = 64, beam_size: int | None = None,
                 text_field: str | None = None, label_field: str | None = None, **_: Any) -> dict[str, Any]:
        """sacreBLEU (cased, detokenised) and chrF of the translations of a parallel file.

        ``data_file`` is a source file whose reference sits beside it under the swapped language suffix
        (``val.de`` → ``val.en``, ``val.de.gz`` → ``val.en.gz``) or a JSONL file with ``source``/``target``
        fields (``--text-field``/``--label-field`` rename them). ``beam_size`` None = the model's default.
        """
        fields = {"source_field": text_field if text_field not in (None, "text") else "source",
                  "target_field": label_field if label_field not in (None, "label") else "target"}
        pairs = read_bitext(data_file, self.source_lang, self.target_lang, **fields)
        self.refuse_unusable(data_file, [(pair.line, pair.source) for pair in pairs])
        decoding = self._decoding(beam_size, None)
        started = time.perf_counter()
        outputs = [t.translation for t in self.predict([p.source for p in pairs], batch_size, decoding.beam_size)]
        seconds = time.perf_counter() - started
        scores = translation_scores(outputs, [p.target for p in pairs])
        return {
            "bleu": round(scores["bleu"], 2),
            "chrf": round(scores["chrf"], 2),
            "n": len(pairs),
            "beam_size": decoding.beam_size,
            "length_penalty": decoding.length_penalty,
            "bleu_details": scores["bleu_details"],
            "chrf_signature": scores["chrf_signature"],
            "seconds": round(seconds, 2),
            "sentences_per_second": round(len(pairs) / max(seconds, 1e-9), 2),
        }
