"""Reading, tokenising, vocabularies and Lightning DataModules.

The DataModules import Lightning, so they load lazily: the Predictor uses the readers, tokenizer and
vocabulary from this package without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_DATAMODULES = {
    "TextClassificationData": "toolkit.data.classification",
    "TaggingData": "toolkit.data.tagging",
    "ParallelTextData": "toolkit.data.parallel",
}


def __getattr__(name: str) -> Any:
    if name in _DATAMODULES:
        return getattr(importlib.import_module(_DATAMODULES[name]), name)
    raise AttributeError(f"module 'toolkit.data' has no attribute {name!r}")


__all__ = list(_DATAMODULES)
