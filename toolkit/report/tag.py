"""The tagger's part of `bilstm report model`: per-type scores, entity-type confusion, error sentences (displaCy).

Entities are read from tag sequences the way seqeval's strict mode reads them (what ``toolkit.metrics``
scores), so an exact match in the confusion table is exactly a true positive of the headline scores.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from typing import Any

from toolkit.data.conll import ColumnFormat, read_conll
from toolkit.report import figures
from toolkit.report import html as h
from toolkit.report.parts import ReportContext, TaskReport

Span = tuple[int, int, str]
"""``(token start, token end (exclusive), entity type)``."""

MISSED, SPURIOUS = "(missed)", "(spurious)"


def entity_spans(sequences: Sequence[Sequence[str]], scheme: str) -> list[list[Span]]:
    """Each sentence's entities under seqeval's strict reading of ``scheme`` (``iob1``, ``iob2``, ``bioes``)."""
    from seqeval.scheme import IOB1, IOB2, IOBES, Entities

    scheme_class = {"iob1": IOB1, "iob2": IOB2, "bioes": IOBES}[scheme]
    return [[(entity.start, entity.end, entity.tag) for entity in sentence]
            for sentence in Entities([list(tags) for tags in sequences], scheme_class).entities]


def type_confusion(gold: list[list[Span]], predicted: list[list[Span]], types: list[str]) -> dict[str, Any]:
    """Gold entity type against the type of the predicted entity that overlaps it most.

    Each gold entity counts once: in its predicted type's column (the diagonal includes boundary errors of the
    right type) or under ``(missed)`` when no predicted entity overlaps it; a predicted entity overlapping no
    gold one counts as ``(spurious)``. ``exact`` counts the gold entities predicted with both boundaries and type.
    """
    matrix = {kind: dict.fromkeys([*types, MISSED], 0) for kind in types}
    spurious = dict.fromkeys(types, 0)
    exact = dict.fromkeys(types, 0)
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        for start, end, kind in gold_spans:
            overlaps = [(min(end, p_end) - max(start, p_start), p_kind, (p_start, p_end))
                        for p_start, p_end, p_kind in predicted_spans if p_start < end and start < p_end]
            if not overlaps:
                matrix[kind][MISSED] += 1
                continue
            _, best_kind, _ = max(overlaps, key=lambda overlap: overlap[0])  # the first of equal overlaps
            matrix[kind][best_kind] += 1
            exact[kind] += (start, end, kind) in predicted_spans
        for p_start, p_end, p_kind in predicted_spans:
            if not any(start < p_end and p_start < end for start, end, _ in gold_spans):
                spurious[p_kind] += 1
    return {"types": types, "rows": matrix, "spurious": spurious, "exact": exact}


def displacy_markup(tokens: Sequence[str], spans: Sequence[Span]) -> h.Markup:
    """displaCy's entity markup of a sentence (tokens joined by spaces); it escapes the text itself, and the
    labels are escaped here (displaCy puts them into its template as they are)."""
    from spacy import displacy

    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    text = " ".join(tokens)
    ents = [{"start": starts[start], "end": starts[end - 1] + len(tokens[end - 1]), "label": html.escape(kind)}
            for start, end, kind in sorted(spans)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no entities to visualize" for a sentence without any
        markup = displacy.render({"text": text, "ents": ents, "title": None}, style="ent", manual=True,
                                 page=False, jupyter=False)
    return h.Markup(markup)


def error_block(line: int, tokens: Sequence[str], gold: Sequence[Span], predicted: Sequence[Span]) -> h.Markup:
    """One sentence, its gold entities beside its predicted ones."""
    sides = [h.tag("div", h.join([h.tag("strong", title), displacy_markup(tokens, spans)]))
             for title, spans in (("gold", gold), ("predicted", predicted))]
    return h.tag("div", h.join([h.note(f"line {line}"), h.tag("div", h.join(sides), class_="side")]),
                 class_="example")


def build(context: ReportContext) -> TaskReport:
    """Per-type P/R/F1 (evaluate's), type confusion, and sentences whose entities differ, gold beside predicted."""
    predictor = context.predictor
    # The same reading as TagPredictor.evaluate (default columns), which has already checked the tags.
    sentences = read_conll(context.data_file, ColumnFormat())
    tagged = predictor.tag_tokens([sentence.tokens for sentence in sentences], context.options.get("batch_size", 64),
                                  with_confidence=False)
    scheme = predictor.input_scheme
    gold = entity_spans([sentence.tags for sentence in sentences], scheme)
    predicted = entity_spans([result.tags for result in tagged], scheme)
    per_type = context.metrics["per_type"]
    types = sorted(set(predictor.entity_types) | set(per_type))
    confusion = type_confusion(gold, predicted, types)

    errors = [i for i in range(len(sentences)) if sorted(gold[i]) != sorted(predicted[i])]
    shown = errors[: context.max_examples]
    examples = [{"line": sentences[i].first_line, "tokens": sentences[i].tokens,
                 "gold": [list(span) for span in gold[i]], "predicted": [list(span) for span in predicted[i]]}
                for i in shown]

    report = TaskReport()
    scored = [kind for kind in types if kind in per_type]
    report.figures["entity_types.png"] = figures.grouped_bars(
        scored, {name: [per_type[kind][name] for kind in scored] for name in ("precision", "recall", "f1")},
        "per-type entity precision, recall and F1 (seqeval, strict)", "score")
    confusion_rows = [[kind, *(confusion["rows"][kind][column] for column in [*types, MISSED]),
                       confusion["exact"][kind]] for kind in types]
    confusion_rows.append([SPURIOUS, *(confusion["spurious"][kind] for kind in types), "", ""])
    blocks = [error_block(sentences[i].first_line, sentences[i].tokens, gold[i], predicted[i]) for i in shown]
    report.sections += [
        h.section("Entity types",
                  h.table(["type", "precision", "recall", "F1", "support"],
                          [[kind, *per_type[kind].values()] for kind in scored]),
                  h.figure("entity_types.png", "precision, recall and F1 of each entity type"),
                  h.note(f"evaluate's per_type scores: seqeval, strict mode, {scheme.upper()} tags.")),
        h.section("Entity-type confusion",
                  h.table(["gold \\ predicted", *types, MISSED, "exact"], confusion_rows),
                  h.note("Each gold entity is counted under the type of the predicted entity that overlaps it most "
                         "(the diagonal includes boundary errors), or as missed; 'exact' counts gold entities "
                         "found with the same boundaries and type; the last row counts predicted entities that "
                         "overlap no gold one.")),
        h.section(f"Sentences with entity errors ({len(shown)} of {len(errors)}, of {len(sentences)} sentences)",
                  *(blocks or [h.note("Every sentence's entities are right.")])),
    ]
    report.data = {"scheme": scheme, "per_type": per_type, "type_confusion": confusion, "errors": examples,
                   "error_sentences": len(errors), "sentences": len(sentences)}
    return report
