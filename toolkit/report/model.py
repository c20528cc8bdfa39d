"""`bilstm report model`: a model directory on a labelled file, as an HTML page, PNG figures and report.json.

The headline numbers are the predictor's own ``evaluate`` on the file, called with the options ``bilstm evaluate``
passes, so they are the numbers ``bilstm evaluate`` prints, by construction. The task's part (the ``report`` the
task table names: ``toolkit.report.<task>:build``) then reads the file the way that ``evaluate`` reads it and
predicts again for the per-example breakdowns: a second pass over the data, but no second definition of any score.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.data.readers import file_sha256
from toolkit.registry import TASKS, load_piece
from toolkit.report import html as h
from toolkit.report.figures import require_matplotlib
from toolkit.report.parts import ReportContext, TaskReport
from toolkit.version import __version__

DEFAULT_MAX_EXAMPLES = 20
"""Rows of the example tables (mistakes, error sentences, sample translations, least likely texts)."""



def headline(metrics: dict[str, Any]) -> h.Markup:
    """The scalar entries of the ``evaluate`` output (nested ones get their own tables in the task part)."""
    rows = [(key, value) for key, value in metrics.items() if not isinstance(value, (dict, list))]
    return h.section("Headline metrics (= bilstm evaluate)", h.table(["metric", "value"], rows),
                     h.note("The predictor's own evaluate() on this file: the numbers `bilstm evaluate` prints."))


def reproducibility(meta: dict[str, Any], model_dir: Path) -> h.Markup:
    """The model directory's record: what it is, how it was trained, and what reproduces the run."""
    provenance = dict(meta.get("provenance") or {})
    config = provenance.pop("config", None)
    about = {key: meta.get(key) for key in ("task", "format_version", "toolkit_version", "created")}
    about["labels"] = len(meta.get("labels") or [])
    parts: list[Any] = [h.tag("h3", "Model"), h.key_values({"directory": str(model_dir), **about})]
    parts += [h.tag("h3", "Training"), h.key_values(meta.get("training") or {})
              if meta.get("training") else h.note("meta.json holds no training record")]
    parts += [h.tag("h3", "Provenance"), h.key_values(provenance) if provenance
              else h.note("meta.json holds no provenance record (a model exported before format 2)")]
    if config is not None:
        parts.append(h.details("resolved training config", h.pre(json.dumps(config, indent=2, ensure_ascii=False))))
    if meta.get("init_from"):
        starts = [(record.get("path", ""), record.get("task", ""), record.get("sha256", "")) for record in
                  meta["init_from"]]
        parts += [h.tag("h3", "Started from"), h.table(["path", "task", "sha256"], starts)]
    if meta.get("backends"):
        parts += [h.tag("h3", "Other runtimes"), h.key_values(meta["backends"])]
    parts.append(h.details("model config", h.pre(json.dumps(meta.get("model_config"), indent=2, ensure_ascii=False))))
    parts.append(h.details("files (sha256)", h.table(["file", "bytes", "sha256"], [
        (name, entry.get("bytes", ""), entry.get("sha256", "")) for name, entry in (meta.get("files") or {}).items()])))
    return h.section("Reproducibility record (meta.json)", *parts)


def model_report(model_dir: str | Path, data_file: str | Path, out: str | Path, batch_size: int | None = None,
                 max_examples: int = DEFAULT_MAX_EXAMPLES, text_field: str = "text",
                 label_field: str = "label", max_chars: int | None = None) -> list[Path]:
    """Write ``out/index.html``, its PNG figures and ``out/report.json`` for a model directory on a labelled file.

    Returns the paths written (``index.html`` first).

    Raises:
        ToolkitError: a missing or unreadable model directory or data file, a file of the wrong kind for the
            task, an ``out`` that is a file, the model directory or not writable, or no matplotlib.
    """
    model_path, data_path = Path(model_dir), Path(data_file)
    target = h.check_out_dir(out, refuse_inside=[model_path] if model_path.is_dir() else [])
    require_matplotlib()
    from toolkit.predict import Predictor

    predictor = Predictor.load(model_path, max_chars=max_chars)
    options: dict[str, Any] = {"text_field": text_field, "label_field": label_field}
    if batch_size is not None:
        options["batch_size"] = batch_size
    metrics = predictor.evaluate(data_path, **options)
    context = ReportContext(predictor, data_path, metrics, options, max_examples)
    part: TaskReport = load_piece(TASKS[predictor.task].report)(context)  # the task's part: the task table names it
    meta = predictor.meta.to_json()
    digest, created = file_sha256(data_path), datetime.now(timezone.utc).isoformat(timespec="seconds")
    title = f"bilstm report: {predictor.task} model {model_path}"
    subtitle = f"model {model_path} on {data_path} (sha256 {digest[:16]}…), bilstm-toolkit {__version__}, {created}"
    document = h.page(title, subtitle, [headline(metrics), *part.sections, reproducibility(meta, model_path)])
    data = {
        "report": "model", "toolkit_version": __version__, "created": created,
        "model_dir": str(model_path), "task": predictor.task, "data_file": str(data_path), "data_sha256": digest,
        "options": {**options, "max_examples": max_examples},
        "metrics": metrics, predictor.task: part.data, "figures": sorted(part.figures), "meta": meta,
    }
    return h.write_report(target, document, part.figures, data)
