"""Write an attention heatmap (PNG) for one sentence translated by a model directory.

    python benchmarks/attention_heatmap.py MODEL_DIR "Ein Hund läuft über den Strand." [--output attention.png]
        [--beam-size 5]

Rows are the output subwords (``</s>`` last), columns the source subwords; each row sums to one.
Needs matplotlib (``pip install -c constraints.txt 'bilstm-toolkit[plot]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _labels(tokens: list[str]) -> list[str]:
    """Subword labels: word-initial pieces without their "▁", word-internal pieces as "·piece"."""
    return [token[1:] or "▁" if token.startswith("▁") else ("·" + token if token[:1].isalnum() else token)
            for token in tokens]


def plot_attention(translation, path: str | Path, title: str | None = None) -> Path:
    """Draw ``translation.attention`` (from ``predict(..., return_attention=True)``) into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if translation.attention is None:
        raise ValueError("the translation carries no attention; call predict(..., return_attention=True)")
    source, target = _labels(translation.source_tokens), _labels(translation.target_tokens)
    figure, axes = plt.subplots(figsize=(max(4.0, 0.5 * len(source) + 2), max(3.0, 0.4 * len(target) + 1.5)))
    image = axes.imshow(translation.attention, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(source)), source, rotation=60, ha="right")
    axes.set_yticks(range(len(target)), target)
    axes.set_xlabel("source subwords")
    axes.set_ylabel("output subwords")
    axes.set_title(title or translation.translation, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("sentence")
    parser.add_argument("--output", default="attention.png")
    parser.add_argument("--beam-size", type=int, default=5)
    args = parser.parse_args(argv)

    from toolkit import Predictor

    predictor = Predictor.load(args.model_dir, device="cpu")
    translation = predictor.predict([args.sentence], beam_size=args.beam_size, return_attention=True)[0]
    path = plot_attention(translation, args.output)
    print(f"{translation.translation}\nattention heatmap: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
