"""`bilstm fit | validate | test`: LightningCLI over the task modules, ending in a model directory.

The config picks the task through ``model.class_path`` (e.g. ``toolkit.tasks.ClassifyModule``) and the
data module through ``data.class_path``. Sizes and labels flow from the data module into the model via
``link_arguments`` (never the other way). After ``fit`` the best checkpoint (by the task's validation
metric) is validated once more and exported as a model directory whose path is printed.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentError
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning import LightningDataModule, Trainer
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger

from toolkit.artifact import FULL_ERRNOS, WRITE_ERRNOS, cannot_write
from toolkit.config import Setting, describe_parse_error, given_settings, nearest_key
from toolkit.errors import ConfigError, OutputError, ToolkitError
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


def task_packages() -> tuple[str, ...]:
    """The packages of tasks that installed packages added to the task table (their DataModule and LightningModule,
    and the config types those take, live there): code the user chose to install, as the toolkit itself is."""
    from toolkit.registry import TASKS

    packages = {reference.split(".")[0].split(":")[0] for entry in TASKS.values() for reference in
                (entry.data, entry.module)}
    return tuple(sorted(packages - {"toolkit"}))


def restrict_import_paths() -> None:
    """Make jsonargparse refuse (before importing anything) every import path outside the allowed packages."""
    from jsonargparse import set_parsing_settings

    set_parsing_settings(import_path_denylist=["*"],
                         import_path_allowlist=[*ALLOWED_IMPORT_PATHS, *task_packages()])


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
    """LightningCLI that links data-derived sizes into the model and exports a model directory.

    Mistakes in the arguments are one :class:`ConfigError` line each (no usage text, no traceback), before any
    data is read: an unknown key with the nearest valid one, an invalid value with the option and the choices,
    a Trainer plug-in name (strategy, accelerator, profiler) that Lightning does not know (checked before the
    model is built), a value the model's own checks refuse. A run that cannot write its files is one
    :class:`OutputError` line, with any checkpoint it cut short removed.
    """

    def __init__(self, *args: Any, argv: list[str], **kwargs: Any) -> None:
        self.argv = argv  # the subcommand and its arguments, for naming a mistake the way it was written
        started = time.time()
        try:
            super().__init__(*args, **kwargs)  # parses, builds, and runs the subcommand
        except OSError as error:
            trainer = getattr(self, "trainer", None)
            root = Path(trainer.default_root_dir) if trainer is not None else None
            if not _run_write_failure(error, root):
                raise
            removed = remove_incomplete_checkpoints(trainer, started)
            outcome = f"the incomplete checkpoint {', '.join(map(str, removed))} was removed" if removed else ""
            if _inside(error.filename, root) or _inside(error.filename, Path(tempfile.gettempdir())):
                raise cannot_write(error, f"the run's files in {root}", outcome,
                                   elsewhere="choose another --trainer.default_root_dir") from None
            raise cannot_write(error, str(error.filename), outcome) from None

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:  # the parser is built with exit_on_error=False (see run)
            subcommand = self.argv[0] if self.argv else ""
            subparser = getattr(self, "_subcommand_parsers", {}).get(subcommand, parser)
            raise ConfigError(describe_parse_error(str(error), subparser, self.argv[1:], ALLOWED_IMPORT_PATHS)
                              ) from None

    def before_instantiate_classes(self) -> None:
        settings = given_settings(self.argv[1:], self._subcommand_parsers[self.subcommand])
        check_trainer_choices(self.config[self.subcommand].get("trainer") or {}, settings)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as error:  # jsonargparse wraps what the model's or data module's __init__ raised
            cause = error.__cause__
            if isinstance(cause, ValueError) and _raised_by_toolkit(cause):  # its checks of a setting's value
                raise ConfigError(f"invalid setting: {' '.join(str(cause).split())}") from None
            raise

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        try:
            return super().instantiate_trainer(**kwargs)
        except ToolkitError:
            raise
        except (MisconfigurationException, ValueError) as error:  # Lightning's checks of the Trainer's arguments
            raise ConfigError(f"invalid trainer settings: {' '.join(str(error).split())}") from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--export_dir", type=str | None, default=None,
                            help="where fit writes the model directory (default: <trainer.default_root_dir>/model)")
        # The data module's data_info (one frozen dataclass per task, e.g. ClassifyDataInfo) reaches the model as
        # it is, opened language models included; the model keeps its plain form in checkpoints (to_dict()).
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
        try:
            path = export_model(model, datamodule, target, metrics, {
                "epochs": trainer.current_epoch, "global_step": trainer.global_step,
                "best_checkpoint": best or None,
                "fit_seconds": round(time.perf_counter() - started, 1) if started else None,
            }, provenance(config.as_dict(), config.get("seed_everything")))
        except OutputError as error:  # disk full at the very end: say where the trained weights still are
            kept = f"; the trained weights are kept in the checkpoint {best}" if best else ""
            raise OutputError(f"{error} (--export_dir chooses where{kept})") from None
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


def _run_write_failure(error: OSError, root: Path | None) -> bool:
    """Whether ``error`` is the run failing to write its checkpoints/logs: no room (whatever the file, since
    Lightning stages checkpoints in the temporary folder), or no permission inside the run directory."""
    if root is None or error.errno not in WRITE_ERRNOS:
        return False
    return error.errno in FULL_ERRNOS or _inside(error.filename, root) or _inside(error.filename2, root)


def _inside(name: Any, folder: Path) -> bool:
    return isinstance(name, str | Path) and Path(name).resolve().is_relative_to(folder.resolve())


def remove_incomplete_checkpoints(trainer: Any, since: float) -> list[Path]:
    """Delete the checkpoints this run left cut short (a disk that filled up mid-copy); returns them.

    Lightning writes a checkpoint to the temporary folder and then moves it into place, which is a copy when
    the two are on different disks: a full disk leaves the first part of the file under its final name, and a
    later ``--ckpt_path`` would try it. A complete checkpoint is a whole zip archive (torch.save's format).
    """
    import zipfile

    removed = []
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        folder = Path(getattr(callback, "dirpath", None) or "")
        if not getattr(callback, "dirpath", None) or not folder.is_dir():
            continue
        for checkpoint in folder.glob("*.ckpt"):
            if (checkpoint.is_file() and not checkpoint.is_symlink() and checkpoint.stat().st_mtime >= since - 1
                    and not zipfile.is_zipfile(checkpoint)):
                checkpoint.unlink(missing_ok=True)
                removed.append(checkpoint)
    return removed


def _raised_by_toolkit(error: BaseException) -> bool:
    """Whether ``error`` was raised in this package's own code (a check), not deeper down (torch, a bug there)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(Path(__file__).resolve().parent)


def strategy_names() -> list[str]:
    """The names ``Trainer(strategy=...)`` takes: "auto" and Lightning's strategy registry."""
    from pytorch_lightning.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def accelerator_names() -> list[str]:
    """The names ``Trainer(accelerator=...)`` takes: "auto", "gpu" (either GPU kind) and Lightning's registry."""
    from pytorch_lightning.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def unknown_profiler(value: str) -> list[str] | None:
    """None when ``Trainer(profiler=value)`` takes the name, else the names it takes.

    Lightning keeps its table of profiler names inside its check (``_init_profiler``), so the check itself is
    asked, and the names are read from what it answers; a name it takes is built once here and thrown away.
    """
    from types import SimpleNamespace

    from pytorch_lightning.trainer.setup import _init_profiler

    try:
        _init_profiler(SimpleNamespace(), value)
    except MisconfigurationException as error:
        return re.findall(r"'([^']+)'", str(error).rpartition("one of")[2]) or [str(error)]
    except Exception:  # a name Lightning knows that cannot run here (xla without torch_xla): Trainer() says so
        return None
    return None


def check_trainer_choices(trainer: Any, settings: list[Setting]) -> None:
    """A strategy, accelerator or profiler named by a string Lightning does not know: one line with the choices.

    Checked before anything is built (Lightning itself would stop inside ``Trainer()`` with a traceback).
    """
    checks = (("strategy", lambda value: None if value.lower() in strategy_names() else strategy_names()),
              ("accelerator", lambda value: None if value in accelerator_names() else accelerator_names()),
              ("profiler", unknown_profiler))
    for name, unknown in checks:
        value = trainer.get(name)
        names = unknown(value) if isinstance(value, str) else None
        if names is None:
            continue
        near = nearest_key(value.lower(), names)
        shown = next((setting.shown() for setting in reversed(settings) if setting.key == f"trainer.{name}"),
                     f"trainer.{name}")
        raise ConfigError(f"{shown}: unknown {name} {value!r}" + (f" (did you mean {near!r}?)" if near else "")
                          + f"; Lightning's {name} names are: {', '.join(names)}")


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
        argv=argv,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},  # re-running into the same directory must not fail
        # Passing args that equal the command line makes LightningCLI warn; None means "read sys.argv".
        args=None if argv == sys.argv[1:] else argv,
        auto_configure_optimizers=False,
        # Resuming uses the config given on the command line; checkpoints hold plain-dict hparams.
        load_from_checkpoint_support=False,
        parser_class=ToolkitArgumentParser,
        # A parse error raises ArgumentError (ToolkitCLI.parse_arguments makes it one line) instead of
        # printing the whole usage and exiting.
        parser_kwargs={"exit_on_error": False},
    )


if __name__ == "__main__":  # DDP re-launches this module with the same arguments
    run(sys.argv[1:])
