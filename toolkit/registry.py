"""The one table of tasks: what each task is made of, by name. Adding a task is one line here.

Every entry names the task's pieces as ``"module:attribute"`` strings, so importing this table imports nothing;
each layer resolves only the piece it owns (:func:`load_piece`): the Predictor its predictor class, training its
LightningModule and DataModule, everything that reads a model directory its spec. The import-direction test
(``tests/test_architecture.py``) follows these strings as edges of the layer that resolves them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskEntry:
    """The pieces of one task."""

    spec: str
    """Its model-directory format (``toolkit.specs``): meta.json layout, side files, ``build_net``."""
    data: str
    """Its DataModule (``toolkit.data``)."""
    module: str
    """Its LightningModule (``toolkit.tasks``)."""
    predictor: str
    """Its Predictor (``toolkit.predict``)."""
    result: str
    """The dataclass one text's prediction is (``to_dict()`` is what every adapter outputs)."""
    spacy_factory: str
    """Its spaCy component's factory name."""
    route: str
    """Its HTTP endpoint: ``POST /<route>``."""
    bento_name: str
    """Its default name in the BentoML model store."""


TASKS: dict[str, TaskEntry] = {
    "classify": TaskEntry("toolkit.specs.classify:SPEC", "toolkit.data.classify:TextClassificationData",
                          "toolkit.tasks.classify:TextClassifier", "toolkit.predict.classify:ClassifierPredictor",
                          "toolkit.predict.classify:ClassPrediction", "bilstm_textcat", "classify", "bilstm-textcat"),
    "tag": TaskEntry("toolkit.specs.tag:SPEC", "toolkit.data.tag:TaggingData", "toolkit.tasks.tag:SequenceTagger",
                     "toolkit.predict.tag:TaggerPredictor", "toolkit.predict.tag:TagPrediction", "bilstm_ner", "tag",
                     "bilstm-ner"),
    "translate": TaskEntry("toolkit.specs.translate:SPEC", "toolkit.data.translate:BitextData",
                           "toolkit.tasks.translate:Translator", "toolkit.predict.translate:TranslatorPredictor",
                           "toolkit.predict.translate:Translation", "bilstm_translate", "translate",
                           "bilstm-translate"),
    "lm": TaskEntry("toolkit.specs.lm:SPEC", "toolkit.data.lm:LanguageModelData", "toolkit.tasks.lm:LanguageModel",
                    "toolkit.predict.lm:LMPredictor", "toolkit.predict.lm:LMScore", "bilstm_lm", "score", "bilstm-lm"),
}


def task_names() -> tuple[str, ...]:
    """Every task, in table order (``classify``, ``tag``, ``translate``, ``lm``)."""
    return tuple(TASKS)


def load_piece(reference: str) -> Any:
    """The object a ``"module:attribute"`` string names (imported on first use)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
