"""`bilstm fit | validate | test`: LightningCLI over the task modules, ending in a model directory.

The config picks the task through ``model.class_path`` (e.g. ``toolkit.tasks.TextClassifier``) and the
data module through ``data.class_path``. Sizes and labels flow from the data module into the model via
``link_arguments`` (never the other way). After ``fit`` the best checkpoint (by the task's validation
metric) is validated once more and exported as a model directory whose path is printed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from pytorch_lightning import LightningDataModule
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from toolkit.artifact import save_model_dir
from toolkit.errors import ConfigError
from toolkit.tasks import TaskModule

# Modules a config may name in a class_path. jsonargparse imports whatever a class_path names, so a
# config from elsewhere could otherwise make `bilstm fit` import arbitrary code.
ALLOWED_CLASS_PREFIXES = ("toolkit.", "pytorch_lightning.", "lightning.pytorch.", "torch.optim.", "torchmetrics.")


DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def _strings(node: Any) -> list[str]:
    """Every string value (and key) in a parsed YAML/JSON document."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [text for value in node for text in _strings(value)]
    return [node] if isinstance(node, str) else []


def _names_importable_code(value: str) -> bool:
    """Whether ``value`` reads as ``package.module.Name`` of an installed package outside the allowed ones.

    jsonargparse imports whatever dotted path a class-typed option gets, whether it comes as ``class_path:``,
    as a plain value (``logger: pkg.Logger``, ``--trainer.callbacks+=pkg.Cb``, ``--model=pkg.Module``) or from a
    nested config file, so every value is checked, not only ``class_path`` keys. ``find_spec`` of a top-level
    name only looks the package up; it runs nothing.
    """
    if not DOTTED_NAME.match(value) or value.startswith(ALLOWED_CLASS_PREFIXES):
        return False
    try:
        return importlib.util.find_spec(value.split(".", 1)[0]) is not None
    except (ImportError, ValueError):
        return False


def _check_values(values: list[str], source: str, seen: set[Path], base: Path | None = None) -> None:
    """Refuse importable dotted names in ``values``; recurse into config files they name.

    A nested file name is tried from the working directory and from ``base``, the directory of the config
    that names it (jsonargparse resolves it either way).
    """
    for value in values:
        if _names_importable_code(value):
            raise ConfigError(
                f"{source}: {value!r} names code outside the allowed packages {ALLOWED_CLASS_PREFIXES}; "
                "configs may only name toolkit, Lightning, torch.optim or torchmetrics classes"
            )
        if not value.endswith(CONFIG_SUFFIXES):
            continue
        for path in {Path(value), *([base / value] if base else [])}:
            if not path.is_file() or path.resolve() in seen:
                continue
            seen.add(path.resolve())  # a nested config file (``model: model.yaml``) is checked the same way
            try:
                content = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as error:
                raise ConfigError(f"{path} is not valid YAML: {error}") from None
            _check_values(_strings(content), str(path), seen, path.parent)


def check_class_paths(argv: list[str]) -> None:
    """Refuse configs and command-line values that name classes outside the allowed packages.

    Checks every command-line value (``--config X``, ``-c X``, ``--key=value``, ``--key value``) and,
    recursively, every string in every YAML/JSON file named on the command line or inside such a file.
    """
    values: list[str] = []
    for position, arg in enumerate(argv):
        if arg in ("-c", "--config") and position + 1 < len(argv) and not Path(argv[position + 1]).is_file():
            raise ConfigError(f"config file not found: {argv[position + 1]}")
        values.append(arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg)
    _check_values(values, "command line", set())


class ToolkitCLI(LightningCLI):
    """LightningCLI that links data-derived sizes into the model and exports a model directory."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--export_dir", type=str | None, default=None,
                            help="where fit writes the model directory (default: <trainer.default_root_dir>/model)")
        parser.link_arguments("data.data_info", "model.init_args.data_info", apply_on="instantiate")
        parser.add_lightning_class_args(ModelSummary, "summary")
        parser.set_defaults({"summary.max_depth": 4})

    def after_fit(self) -> None:
        trainer, model, datamodule = self.trainer, self.model, self.datamodule
        started = getattr(self, "_fit_started", None)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        # Validate the best weights once more: this loads them into `model` and gives the metrics to record.
        results = trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False,
                                   weights_only=True)
        if not trainer.is_global_zero:
            return
        config = self.config[self.config.subcommand]
        target = Path(config.get("export_dir") or Path(trainer.default_root_dir) / "model")
        metrics = {key: round(float(value), 6) for key, value in (results[0] if results else {}).items()}
        path = export_model(model, datamodule, target, metrics, {
            "epochs": trainer.current_epoch, "global_step": trainer.global_step,
            "best_checkpoint": best or None,
            "fit_seconds": round(time.perf_counter() - started, 1) if started else None,
        })
        print(json.dumps({"model_dir": str(path), "metrics": metrics}))
        print(f"model directory: {path}")

    def _checkpoints_load_weights_only(self) -> None:
        """Checkpoints (``--ckpt_path``) are loaded with ``weights_only=True``: no pickled code runs."""
        options = self.config_init[self.subcommand]
        if options.get("weights_only") is False:
            raise ConfigError("--weights_only false is refused: checkpoints are loaded with weights_only=True "
                              "so that a checkpoint file cannot run code")
        options["weights_only"] = True

    def before_fit(self) -> None:
        self._checkpoints_load_weights_only()
        self._fit_started = time.perf_counter()

    def before_validate(self) -> None:
        self._checkpoints_load_weights_only()

    def before_test(self) -> None:
        self._checkpoints_load_weights_only()


def export_model(model: TaskModule, datamodule: LightningDataModule, target: str | Path,
                 metrics: dict[str, float] | None = None, training: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s network and ``datamodule``'s vocabulary/labels as a model directory."""
    data_side = datamodule.artifact()
    return save_model_dir(
        target,
        task=model.task,
        model_config=model.export_config(),
        state_dict=model.net.state_dict(),
        json_files=data_side.get("json_files"),
        extra_files=data_side.get("extra_files"),
        labels=data_side.get("labels"),
        tokenizer=data_side.get("tokenizer"),
        training={**(training or {}), "metrics": metrics or {}, "data": data_side.get("data"),
                  "torch": torch.__version__},
    )


def run(argv: list[str]) -> None:
    """Run LightningCLI on ``argv`` (e.g. ``["fit", "--config", "configs/textcat_sample.yaml"]``)."""
    check_class_paths(argv)
    ToolkitCLI(
        TaskModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},  # re-running into the same directory must not fail
        # Passing args that equal the command line makes LightningCLI warn; None means "read sys.argv".
        args=None if argv == sys.argv[1:] else argv,
        auto_configure_optimizers=False,
        # Resuming uses the config given on the command line; checkpoints hold plain-dict hparams.
        load_from_checkpoint_support=False,
    )


if __name__ == "__main__":  # DDP re-launches this module with the same arguments
    run(sys.argv[1:])
