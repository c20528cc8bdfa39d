"""bilstm-toolkit: recurrent neural networks for NLP.

``from toolkit import Predictor`` is the one entry point for using a trained model directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolkit.version import __version__

if TYPE_CHECKING:
    from toolkit.predict import Predictor


def __getattr__(name: str) -> Any:
    # Lazy, so `import toolkit` (e.g. by spaCy's entry points) does not import torch.
    if name == "Predictor":
        from toolkit.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


__all__ = ["Predictor", "__version__"]
