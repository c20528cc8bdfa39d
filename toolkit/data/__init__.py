"""Reading, tokenising, vocabularies and Lightning DataModules (one per task, named like the task).

The DataModules import Lightning, so they load lazily: the Predictor uses the readers, tokenizers and
vocabularies from this package without importing Lightning. This package never imports ``toolkit.nn``.
"""

from __future__ import annotations

import importlib
from typing import Any

_DATAMODULES = {
    "TextClassificationData": "toolkit.data.classify",
    "TaggingData": "toolkit.data.tag",
    "BitextData": "toolkit.data.translate",
    "ParallelTextData": "toolkit.data.translate",  # the former name of BitextData
    "LanguageModelData": "toolkit.data.lm",
}


def __getattr__(name: str) -> Any:
    if name in _DATAMODULES:
        return getattr(importlib.import_module(_DATAMODULES[name]), name)
    raise AttributeError(f"module 'toolkit.data' has no attribute {name!r}")


__all__ = ["BitextData", "LanguageModelData", "TaggingData", "TextClassificationData"]
