"""The language model's part of `bilstm report model`: perplexity by token position and by text length.

The headline perplexity is evaluate's: the file read as one stream with the state carried across lines (how
PTB figures are made). The breakdowns need one log-probability per token of each text, which ``score`` gives by
reading every text on its own from ``<eos>``; their overall perplexity (shown too) is therefore a little higher
than the stream's, which carries context from the line before.
"""

from __future__ import annotations

from typing import Any

from toolkit.data.lm_text import read_lines
from toolkit.metrics import perplexity_scores
from toolkit.report import figures
from toolkit.report import html as h
from toolkit.report.parts import ReportContext, TaskReport

MAX_POSITION = 64
"""Positions plotted one by one; later ones are pooled into one ``65+`` entry."""
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 80), (81, None))
"""Text lengths in scored tokens (``<eos>`` included), inclusive."""


def by_position(log_probs: list[list[float]]) -> list[dict[str, Any]]:
    """Perplexity of the tokens at each position (1 = first token read), pooled beyond :data:`MAX_POSITION`."""
    nll = [0.0] * (MAX_POSITION + 1)
    counts = [0] * (MAX_POSITION + 1)
    for values in log_probs:
        for position, value in enumerate(values):
            slot = min(position, MAX_POSITION)
            nll[slot] -= value
            counts[slot] += 1
    return [{"position": f"{slot + 1}+" if slot == MAX_POSITION else slot + 1, "tokens": counts[slot],
             "perplexity": perplexity_scores(nll[slot], counts[slot])["perplexity"]}
            for slot in range(MAX_POSITION + 1) if counts[slot]]


def by_length(log_probs: list[list[float]]) -> list[dict[str, Any]]:
    """Perplexity of the texts in each length bucket (all their tokens together)."""
    rows = []
    for low, high in LENGTH_BUCKETS:
        members = [values for values in log_probs if len(values) >= low and (high is None or len(values) <= high)]
        if members:
            tokens = sum(map(len, members))
            rows.append({"bucket": f"{low}+" if high is None else f"{low}–{high}", "texts": len(members),
                         "tokens": tokens,
                         "perplexity": perplexity_scores(-sum(map(sum, members)), tokens)["perplexity"]})
    return rows


def build(context: ReportContext) -> TaskReport:
    """Perplexity by position and by length (per-text scores), and the texts the model finds least likely."""
    predictor = context.predictor
    lines = list(read_lines(context.data_file, context.options["text_field"]))  # evaluate's reading of the file
    scores = predictor.score([text for _, text in lines], context.options.get("batch_size", 32))
    log_probs = [score.token_log_probs for score in scores]
    positions, lengths = by_position(log_probs), by_length(log_probs)
    per_text = perplexity_scores(-sum(map(sum, log_probs)), sum(map(len, log_probs)))
    order = sorted(range(len(scores)), key=lambda i: -scores[i].perplexity)[: context.max_examples]
    unlikely = [{"line": lines[i][0], "text": h.shorten(lines[i][1]), "tokens": len(scores[i].tokens),
                 "perplexity": scores[i].perplexity} for i in order]

    report = TaskReport()
    plotted = [row for row in positions if isinstance(row["position"], int)]
    report.figures["perplexity_by_position.png"] = figures.lines(
        {"perplexity": ([row["position"] for row in plotted], [row["perplexity"] for row in plotted])},
        "perplexity by token position", "position in the text (tokens, in the model's reading order)",
        "perplexity", log_y=True)
    report.figures["perplexity_by_length.png"] = figures.bucket_bars(
        [row["bucket"] for row in lengths], [row["perplexity"] for row in lengths], [row["texts"] for row in lengths],
        "perplexity by text length", "text length (tokens, <eos> included)", "perplexity")
    direction = "from the end of each text (a backward model)" if predictor.backward else "from the start"
    report.sections += [
        h.section("Per-text scoring",
                  h.table(["scored", "perplexity", "cross-entropy (nats)", "bits per token", "tokens", "texts"],
                          [["each text on its own", per_text["perplexity"], per_text["cross_entropy_nats"],
                            per_text["bits_per_token"], per_text["tokens"], len(scores)]]),
                  h.note("The breakdowns below score each text on its own from <eos> (Predictor.score); the "
                         "headline reads the file as one stream, carrying context across lines.")),
        h.section("Perplexity by token position",
                  h.figure("perplexity_by_position.png", f"perplexity of the n-th token read, counted {direction}"),
                  h.table(["position", "tokens", "perplexity"], [list(row.values()) for row in positions])),
        h.section("Perplexity by text length",
                  h.figure("perplexity_by_length.png", "perplexity of the texts of each length"),
                  h.table(["tokens", "texts", "scored tokens", "perplexity"], [list(row.values()) for row in lengths])),
        h.section(f"Least likely texts (the {len(unlikely)} of highest perplexity)",
                  h.table(["line", "text", "tokens", "perplexity"], [list(row.values()) for row in unlikely])),
    ]
    report.data = {"per_text": per_text, "texts": len(scores), "by_position": positions, "by_length": lengths,
                   "least_likely": unlikely}
    return report
