"""Import a model directory into the BentoML model store, so a bento (and its image) can carry it.

    python -m serving.import_model runs/textcat_sample/model [--name bilstm-textcat]   # prints the tag
    BILSTM_BENTO_MODELS=bilstm-textcat:latest bentoml serve serving.service:BilstmService
    bilstm serve --model-tag bilstm-textcat:latest

The stored model is the model directory, file for file (checksums verified first), plus BentoML's own
``model.yaml``; the service loads it with ``Predictor.load`` like any model directory. Labels carry the
task and toolkit version; metadata carries the training metrics from ``meta.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def import_model_dir(model_dir: str | Path, name: str | None = None, labels: dict[str, str] | None = None) -> str:
    """Copy a validated model directory into the BentoML store; returns the new tag (``name:version``).

    Raises:
        ModelDirError: the directory is missing, incomplete or corrupt (nothing is stored then).
    """
    import bentoml

    from toolkit.artifact import load_model_dir
    from toolkit.registry import TASKS

    source = load_model_dir(model_dir)  # checks every file's sha256 before anything is stored
    meta = source.meta
    metrics = meta.training.get("metrics") or {}
    all_labels = {"task": meta.task, "toolkit_version": meta.toolkit_version,
                  "format_version": str(meta.format_version), **(labels or {})}
    with bentoml.models.create(name or TASKS[meta.task].bento_name, labels=all_labels,
                               metadata={"metrics": metrics, "source": str(Path(model_dir).resolve())}) as stored:
        for item in ["meta.json", *meta.files]:
            target = Path(stored.path) / item
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.path / item, target)
    return str(stored.tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.import_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--name", help="model name in the store (default by task: bilstm-textcat, bilstm-ner, "
                                       "bilstm-translate…; toolkit/registry.py)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra label; repeatable")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from toolkit.errors import ToolkitError

    try:
        labels = dict(item.split("=", 1) for item in args.label)
    except ValueError:
        parser.error("--label takes KEY=VALUE")
    try:
        tag = import_model_dir(args.model_dir, args.name, labels)
    except ToolkitError as error:
        print(f"import_model: error: {error}", file=sys.stderr)
        return 2
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
