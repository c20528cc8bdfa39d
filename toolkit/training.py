"""`bilstm fit | validate | test`: LightningCLI over the task modules, ending in a model directory.

The config picks the task through ``model.class_path`` (e.g. ``toolkit.tasks.TextClassifier``) and the
data module through ``data.class_path``. Sizes and labels flow from the data module into the model via
``link_arguments`` (never the other way). After ``fit`` the best checkpoint (by the task's validation
metric) is validated once more and exported as a model directory whose path is printed.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningDataModule
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger

from toolkit.errors import ConfigError
from toolkit.provenance import provenance
from toolkit.tasks import TaskModule

# Packages whose classes a config may name. jsonargparse imports whatever import path a value names (a
# ``class_path``, a bare dotted value for a class-typed option, an inline JSON/YAML string, a nested config
# file, an environment variable when JSONARGPARSE_DEFAULT_ENV is on). Its import-path policy is checked right
# before each of those imports, so denying everything ("*") and allowing these packages holds however a
# path arrives. jsonargparse also checks an object's canonical path (where it is defined: e.g.
# torch.optim.adamw.AdamW for torch.optim.AdamW), which these entries cover.
ALLOWED_IMPORT_PATHS = ("toolkit", "pytorch_lightning", "lightning.pytorch", "lightning_fabric", "torch.optim",
                        "torchmetrics")


DENIED_IMPORT = re.compile(r"Importing '([\w.]+)' is not allowed")


def restrict_import_paths() -> None:
    """Make jsonargparse refuse (before importing anything) every import path outside the allowed packages."""
    from jsonargparse import set_parsing_settings

    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=list(ALLOWED_IMPORT_PATHS))


def check_config_files(argv: list[str]) -> None:
    """A ``--config``/``-c`` file that does not exist: one clear line instead of jsonargparse's usage text."""
    for position, arg in enumerate(argv):
        if arg in ("-c", "--config") and position + 1 < len(argv) and not Path(argv[position + 1]).is_file():
            raise ConfigError(f"config file not found: {argv[position + 1]}")


class ToolkitArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, but a value naming code outside the allowed packages is one clear error line."""

    def error(self, message: str, ex: Exception | None = None):
        denied = DENIED_IMPORT.search(message)
        if denied:
            raise ConfigError(f"{denied.group(1)!r} names code outside the allowed packages "
                              f"({', '.join(ALLOWED_IMPORT_PATHS)}); a config or command line may only name toolkit, "
                              "Lightning, torch.optim or torchmetrics classes, and nothing else is imported")
        super().error(message, ex)


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
        }, provenance(config.as_dict(), config.get("seed_everything")))
        print(json.dumps({"model_dir": str(path), "metrics": metrics}))
        print(f"model directory: {path}")
        command = learning_curves_command(trainer, path)
        if command is not None:
            print(f"learning curves: {command}")

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


def learning_curves_command(trainer: Any, model_dir: str | Path) -> str | None:
    """The `bilstm report run` command that draws this run's learning curves, or None when no logger of the
    trainer writes a ``metrics.csv`` (Lightning's CSVLogger, its default when TensorBoard is not installed).

    The report goes next to the model directory (``<model_dir>_curves``), so that it never lands inside it.
    """
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            model_dir = Path(model_dir)
            out = model_dir.with_name(f"{model_dir.name}_curves")
            return f"bilstm report run {shlex.quote(str(logger.log_dir))} --out {shlex.quote(str(out))}"
    return None


def export_model(model: TaskModule, datamodule: LightningDataModule, target: str | Path,
                 metrics: dict[str, float] | None = None, training: dict[str, Any] | None = None,
                 run_record: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s network and ``datamodule``'s vocabulary/labels as a model directory (through the spec)."""
    return model.spec.save(target, model.model_config, datamodule.export(), model.net.state_dict(),
                           training={**(training or {}), "metrics": metrics or {}, "torch": torch.__version__},
                           provenance=run_record, init_from=model.init_from_records)


def run(argv: list[str]) -> None:
    """Run LightningCLI on ``argv`` (e.g. ``["fit", "--config", "configs/textcat_sample.yaml"]``)."""
    check_config_files(argv)
    restrict_import_paths()
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
        parser_class=ToolkitArgumentParser,
    )


if __name__ == "__main__":  # DDP re-launches this module with the same arguments
    run(sys.argv[1:])
