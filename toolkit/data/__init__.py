"""Reading, tokenising, vocabularies and Lightning DataModules (one per task, named in the task table).

The DataModules import Lightning, so they load lazily: the Predictor uses the readers, tokenizers and
vocabularies from this package without importing Lightning. This package never imports ``toolkit.nn``.
``toolkit.data.<Name>`` is the ``class_path`` form configs use for a task's DataModule (the task table's ``data``).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from toolkit.registry import TASKS, load_piece

    for entry in TASKS.values():
        if entry.data.rpartition(":")[2] == name:
            return load_piece(entry.data)
    names = ", ".join(entry.data.rpartition(":")[2] for entry in TASKS.values())
    raise AttributeError(f"module 'toolkit.data' has no attribute {name!r}; the task DataModules are {names} "
                         "(renamed on 2026-12-06: see the README)")


def __dir__() -> list[str]:
    from toolkit.registry import TASKS

    return sorted({*globals(), *(entry.data.rpartition(":")[2] for entry in TASKS.values())})
