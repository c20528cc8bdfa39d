"""The translator's part of `bilstm report model`: BLEU by source length, sample translations, attention."""

from __future__ import annotations

from typing import Any

from toolkit.data.bitext import read_bitext
from toolkit.metrics import translation_scores
from toolkit.report import figures
from toolkit.report import html as h
from toolkit.report.parts import ReportContext, TaskReport

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 30), (31, 50), (51, None))
"""Source length ranges in words (whitespace-separated), inclusive."""
MAX_HEATMAPS = 10
"""Attention heatmaps drawn (the first samples); each is one PNG."""


def bucket_name(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}–{high}"


def bleu_by_length(sources: list[str], outputs: list[str], references: list[str]) -> list[dict[str, Any]]:
    """Corpus BLEU and chrF (``toolkit.metrics.translation_scores``) of each non-empty source length bucket."""
    rows = []
    lengths = [len(source.split()) for source in sources]
    for low, high in LENGTH_BUCKETS:
        members = [i for i, length in enumerate(lengths) if length >= low and (high is None or length <= high)]
        if members:
            scores = translation_scores([outputs[i] for i in members], [references[i] for i in members])
            rows.append({"bucket": bucket_name(low, high), "sentences": len(members),
                         "bleu": round(scores["bleu"], 2), "chrf": round(scores["chrf"], 2)})
    return rows


def build(context: ReportContext) -> TaskReport:
    """BLEU by source length bucket, sample translations, and attention heatmaps of the first samples."""
    predictor, options, metrics = context.predictor, context.options, context.metrics
    # The same reading as TranslatePredictor.evaluate: a JSONL file's fields, or the source file plus the
    # reference beside it; --text-field/--label-field rename the JSONL fields as they do for evaluate.
    fields = {"source_field": options["text_field"] if options["text_field"] != "text" else "source",
              "target_field": options["label_field"] if options["label_field"] != "label" else "target"}
    pairs = read_bitext(context.data_file, predictor.source_lang, predictor.target_lang, **fields)
    batch_size = options.get("batch_size", 64)
    beam_size = metrics["beam_size"]  # what evaluate decoded with (the model's default, resolved)
    sources, references = [pair.source for pair in pairs], [pair.target for pair in pairs]
    outputs = [result.translation for result in predictor.predict(sources, batch_size, beam_size)]
    buckets = bleu_by_length(sources, outputs, references)

    shown = list(range(min(context.max_examples, len(pairs))))
    with_attention = predictor.predict([sources[i] for i in shown[:MAX_HEATMAPS]], batch_size, beam_size,
                                       return_attention=True)
    report = TaskReport()
    report.figures["bleu_by_length.png"] = figures.bucket_bars(
        [row["bucket"] for row in buckets], [row["bleu"] for row in buckets], [row["sentences"] for row in buckets],
        "BLEU by source length", "source length (words)", "BLEU")
    samples, heatmaps = [], []
    for number, i in enumerate(shown, start=1):
        sample: dict[str, Any] = {"line": pairs[i].line, "source": sources[i], "reference": references[i],
                                  "translation": outputs[i]}
        if number <= len(with_attention):
            result = with_attention[number - 1]
            name = f"attention_{number:02d}.png"
            report.figures[name] = figures.heatmap(result.attention, result.source_tokens, result.target_tokens,
                                                   f"line {pairs[i].line}: {result.translation[:80]}")
            sample.update(attention_figure=name, attention=result.attention, source_tokens=result.source_tokens,
                          target_tokens=result.target_tokens)
            heatmaps.append(h.figure(name, f"attention, line {pairs[i].line}: each output subword (row) over the "
                                           "source subwords (columns)"))
        samples.append(sample)

    report.sections += [
        h.section("BLEU by source length",
                  h.figure("bleu_by_length.png", "corpus BLEU of the sentences in each source length range"),
                  h.table(["source words", "sentences", "BLEU", "chrF"],
                          [list(row.values()) for row in buckets]),
                  h.note("sacreBLEU corpus scores (toolkit.metrics.translation_scores) of each bucket's sentences, "
                         f"decoded like evaluate (beam size {beam_size}); short buckets are noisy.")),
        h.section(f"Sample translations (the first {len(samples)} of {len(pairs)})",
                  h.table(["line", "source", "reference", "translation"],
                          [[s["line"], s["source"], s["reference"], s["translation"]] for s in samples])),
        h.section(f"Attention (the first {len(heatmaps)} samples)", *heatmaps,
                  h.note("Attention of a separate decode of these sentences (same beam); the rows are the output "
                         "subwords of that decode, </s> last when produced.")),
    ]
    report.data = {"beam_size": beam_size, "bleu_by_length": buckets, "samples": samples, "sentences": len(pairs)}
    return report
