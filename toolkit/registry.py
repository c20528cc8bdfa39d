"""The one table of tasks: what each task is made of, by name. Adding a task is one entry here (or in a package).

Every entry names the task's pieces as ``"module:attribute"`` strings, so importing this table imports nothing;
each layer resolves only the piece it owns (:func:`load_piece`): the Predictor its predictor class, training its
LightningModule and DataModule, everything that reads a model directory its spec, the adapters their
component, report or export. Adapters dispatch on an entry's fields (its input kind, its options, whether it
generates), never on a task's name; ``tests/test_architecture.py`` checks both that and the import directions,
following these strings as edges of the layer that resolves them.

A package can add tasks without editing this file: an entry point in the group ``bilstm_toolkit.tasks`` whose name
is the task and whose object is its :class:`TaskEntry` (``docs/architecture.md``, "Adding a task"). Installed
packages are code the user chose to install, like spaCy's own factories; nothing in a config, a model directory
or a request can add one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "bilstm_toolkit.tasks"
INPUT_KINDS = {
    "text": "one text per input: a .txt line, a JSONL text field, an HTTP text, a spaCy Doc",
    "tokens": "a text, or a sentence already split into tokens: CoNLL column files in `bilstm label` and `evaluate`",
}
"""What a task's predictor takes, which is what each adapter feeds it."""


@dataclass(frozen=True)
class TaskEntry:
    """The pieces of one task."""

    spec: str
    """Its model-directory format (``toolkit.specs``): meta.json layout, side files, ``build_net``."""
    data: str
    """Its DataModule (``toolkit.data``); also the ``class_path`` configs name (``toolkit.data.<Name>``)."""
    module: str
    """Its LightningModule (``toolkit.tasks``); also the ``class_path`` configs name (``toolkit.tasks.<Name>``)."""
    predictor: str
    """Its Predictor (``toolkit.predict``)."""
    result: str
    """The dataclass one input's prediction is (``to_dict()`` is what every adapter outputs)."""
    report: str
    """Its part of `bilstm report model`: ``build(context) -> TaskReport`` (``toolkit.report``)."""
    input_kind: str
    """One of :data:`INPUT_KINDS`."""
    spacy_factory: str
    """Its spaCy component's factory name (``nlp.add_pipe(...)``; public, kept across releases)."""
    spacy_component: str
    """Its spaCy component class (``toolkit.spacy_component``): the factory is made from its ``factory_config``."""
    route: str
    """Its HTTP endpoint: ``POST /<route>``."""
    bento_name: str
    """Its default name in the BentoML model store."""
    onnx_export: str | None = None
    """``export(predictor, model_dir, int8) -> backends``: its ONNX export (``bilstm export --onnx``); None: none."""
    options: str | None = None
    """A dataclass of per-request prediction options beyond the texts (``/translate``'s ``attention``): the HTTP
    request model gains its fields, and a request that sets one is answered without adaptive batching."""
    generation: str | None = None
    """A dataclass of sampling settings (``toolkit.predict.lm:Sampling``): the task also samples text, which gives
    it ``POST /generate``, `bilstm generate` and the service's generation worker."""
    ensemble: str | None = None
    """The network that averages trained models of the task (``toolkit.nn.ensemble``), called with the members'
    networks: `bilstm ensemble` writes one model directory of it, which the spec rebuilds from meta.json
    (``model_config.ensemble``) and every reader of a model directory uses as one model. None: not ensembled."""


TASKS: dict[str, TaskEntry] = {
    "classify": TaskEntry(
        spec="toolkit.specs.classify:SPEC", data="toolkit.data.classify:ClassifyData",
        module="toolkit.tasks.classify:ClassifyModule", predictor="toolkit.predict.classify:ClassifyPredictor",
        result="toolkit.predict.classify:ClassPrediction", report="toolkit.report.classify:build",
        input_kind="text", spacy_factory="bilstm_textcat",
        spacy_component="toolkit.spacy_component:ClassifyComponent", route="classify",
        bento_name="bilstm-textcat", onnx_export="toolkit.onnx_export:export_classifier",
        ensemble="toolkit.nn.ensemble:ClassifyEnsemble"),
    "tag": TaskEntry(
        spec="toolkit.specs.tag:SPEC", data="toolkit.data.tag:TagData", module="toolkit.tasks.tag:TagModule",
        predictor="toolkit.predict.tag:TagPredictor", result="toolkit.predict.tag:TagPrediction",
        report="toolkit.report.tag:build", input_kind="tokens", spacy_factory="bilstm_ner",
        spacy_component="toolkit.spacy_component:TagComponent", route="tag", bento_name="bilstm-ner",
        onnx_export="toolkit.onnx_export:export_tagger", ensemble="toolkit.nn.ensemble:TagEnsemble"),
    "translate": TaskEntry(
        spec="toolkit.specs.translate:SPEC", data="toolkit.data.translate:TranslateData",
        module="toolkit.tasks.translate:TranslateModule", predictor="toolkit.predict.translate:TranslatePredictor",
        result="toolkit.predict.translate:Translation", report="toolkit.report.translate:build", input_kind="text",
        spacy_factory="bilstm_translate", spacy_component="toolkit.spacy_component:TranslateComponent",
        route="translate", bento_name="bilstm-translate", onnx_export="toolkit.onnx_seq2seq:export_translator",
        options="toolkit.predict.translate:TranslateOptions"),
    "lm": TaskEntry(
        spec="toolkit.specs.lm:SPEC", data="toolkit.data.lm:LMData", module="toolkit.tasks.lm:LMModule",
        predictor="toolkit.predict.lm:LMPredictor", result="toolkit.predict.lm:LMScore",
        report="toolkit.report.lm:build",
        input_kind="text", spacy_factory="bilstm_lm", spacy_component="toolkit.spacy_component:LMComponent",
        route="score", bento_name="bilstm-lm", onnx_export="toolkit.onnx_export:export_language_model",
        generation="toolkit.predict.lm:Sampling", ensemble="toolkit.nn.ensemble:LMEnsemble"),
}


def _add_installed_tasks() -> None:
    """Entries that installed packages declare (entry-point group ``bilstm_toolkit.tasks``), after the built-in ones."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in TASKS:
            continue  # a built-in task keeps its own entry
        entry = point.load()
        if not isinstance(entry, TaskEntry):
            raise TypeError(f"entry point {point.value!r} of group {ENTRY_POINT_GROUP} must be a TaskEntry, "
                            f"not {type(entry).__name__}")
        if entry.input_kind not in INPUT_KINDS:
            raise ValueError(f"task {point.name!r}: input_kind {entry.input_kind!r} is not one of "
                             f"{sorted(INPUT_KINDS)}")
        TASKS[point.name] = entry


_add_installed_tasks()


def task_names() -> tuple[str, ...]:
    """Every task, in table order (``classify``, ``tag``, ``translate``, ``lm``, then installed ones)."""
    return tuple(TASKS)


def load_piece(reference: str) -> Any:
    """The object a ``"module:attribute"`` string names (imported on first use)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
