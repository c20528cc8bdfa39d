"""The models one worker serves: where they come from, on which device, and whether they are loaded yet.

Loading goes through :meth:`toolkit.Predictor.load` only, so the service tokenises, batches and decodes
exactly like the Python API, the spaCy component and the batch job. Weights load in a background thread:
``/livez`` answers at once, ``/readyz`` (and every endpoint, with 503) waits until every model is loaded.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.artifact import read_meta
from toolkit.errors import ConfigError
from toolkit.registry import task_names

if TYPE_CHECKING:
    import torch

    from serving.settings import ServeSettings
    from toolkit.predict import Predictor

logger = logging.getLogger("bentoml.bilstm")  # under "bentoml": BentoML logs it

WARMUP_TEXT = "A short warm-up sentence."


@dataclass(frozen=True)
class ModelSource:
    """One model to serve: its task, its directory, and where the directory came from (for messages)."""

    task: str
    path: Path
    origin: str


def resolve_sources(paths: Sequence[tuple[str | Path, str]]) -> list[ModelSource]:
    """``(directory, origin)`` pairs → one source per task, reading only each ``meta.json``.

    Raises:
        ModelDirError: a directory is missing or not a model directory (from :func:`read_meta`).
        ConfigError: two models for the same task (an endpoint serves one model).
    """
    sources: dict[str, ModelSource] = {}
    for path, origin in paths:
        task = read_meta(path).task
        if task in sources:
            raise ConfigError(f"two {task!r} models given ({sources[task].origin} and {origin}); "
                              f"/{task} serves one model: start one server per model")
        sources[task] = ModelSource(task, Path(path), origin)
    return [sources[task] for task in task_names() if task in sources]


def model_paths(service: Any, settings: ServeSettings,
                bento_attributes: list[tuple[str, str]]) -> list[tuple[Any, str]]:
    """``(directory, origin)`` of every configured model: the directories, then the stored models, which a
    service holds as ``BentoModel`` class attributes (so `bentoml build` packs them) and resolves here."""
    paths: list[tuple[Any, str]] = [(path, path) for path in settings.model_dirs]
    for attribute, tag in bento_attributes:
        paths.append((getattr(service, attribute).path, f"BentoML model {tag}"))
    return paths


def configured_tasks(settings: ServeSettings) -> set[str]:
    """The tasks of the configured models, read from their ``meta.json`` at import; unreadable ones are skipped
    (the service reports them on ``/readyz`` once it starts)."""
    tasks = set()
    for path in settings.model_dirs:
        with contextlib.suppress(Exception):
            tasks.add(read_meta(path).task)
    if settings.bento_models:
        import bentoml

        for tag in settings.bento_models:
            with contextlib.suppress(Exception):
                tasks.add(read_meta(bentoml.models.get(tag).path).task)
    return tasks


def pick_device(setting: str, worker_index: int | None) -> torch.device:
    """The worker's device: CPU, or the GPU of its worker index (workers 1..N → ``cuda:0..N-1``).

    BentoML gives every worker of a ``resources={"gpu": N}`` service the same ``CUDA_VISIBLE_DEVICES``
    list, so worker *i* takes the *i*-th visible GPU: one model copy per worker, each on its own device.
    """
    import torch

    if setting == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if setting == "cuda":
            raise ConfigError("BILSTM_DEVICE=cuda but this worker sees no CUDA device "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        return torch.device("cpu")
    return torch.device("cuda", ((worker_index or 1) - 1) % torch.cuda.device_count())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = plain fp32 (always on CPU)."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        logger.warning("BILSTM_PRECISION=bf16 but %s has no bf16 support; using fp16", device)
        return torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


class ModelRegistry:
    """The predictors of one worker process, by task, plus their loading state."""

    def __init__(self) -> None:
        self.sources: list[ModelSource] = []
        self.predictors: dict[str, Predictor] = {}
        self.error: str | None = None
        self.device: torch.device | None = None
        self._dtype: torch.dtype | None = None
        self._beam_size: int | None = None
        self._loaded = threading.Event()

    @property
    def tasks(self) -> list[str]:
        """Tasks this worker serves (known before the weights are loaded)."""
        return [source.task for source in self.sources]

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.error is None

    def configure(self, sources: list[ModelSource], settings: ServeSettings) -> None:
        """Set what to load; call :meth:`load` (or :meth:`start`) next."""
        self.sources = list(sources)
        self._settings = settings
        self._beam_size = settings.translate_beam_size
        if not self.sources:
            self.error = ("no models configured: set BILSTM_MODEL_DIRS (model directories, separated by "
                          f"{os.pathsep!r}) or BILSTM_BENTO_MODELS (BentoML model tags), or use `bilstm serve DIR`")

    def start(self) -> threading.Thread:
        """Load in a background thread (errors are logged and kept in :attr:`error`)."""
        thread = threading.Thread(target=self._load_logged, name="bilstm-model-load", daemon=True)
        thread.start()
        return thread

    def _load_logged(self) -> None:
        try:
            self.load()
        except Exception as error:  # keep the worker alive: /readyz says 503 and the log says why
            self.error = f"loading the models failed: {error}"
            logger.exception("bilstm: loading the models failed")
        finally:
            self._loaded.set()

    def load(self, worker_index: int | None = None) -> None:
        """Load every configured model on this worker's device and run one warm-up prediction each."""
        import torch
        from bentoml import server_context

        from toolkit.predict import Predictor

        if self.error is not None:
            raise ConfigError(self.error)
        settings = self._settings
        device_setting = "cpu" if settings.backend == "onnx" else settings.device
        self.device = pick_device(device_setting, worker_index or server_context.worker_index)
        if self.device.type == "cpu":
            torch.set_num_threads(settings.threads)
        else:
            torch.cuda.set_device(self.device)
        self._dtype = autocast_dtype(settings.precision, self.device)
        for source in self.sources:
            started = time.perf_counter()
            # ONNX Runtime takes torch's thread count, set to settings.threads above
            predictor = Predictor.load(source.path, device=self.device, backend=settings.backend)
            with self._autocast():
                predictor.predict([WARMUP_TEXT])  # lazy kernels and tokenizers are built before traffic arrives
            self.predictors[source.task] = predictor
            logger.info("bilstm: loaded %s model %s on %s (%s backend) in %.1f s", source.task, source.origin,
                        self.device, settings.backend,
                        time.perf_counter() - started)
        # Everything loaded so far (torch, spaCy, BentoML, the models: ~230k objects) lives as long as the worker.
        # A full (generation 2) garbage collection walked all of it: 120-240 ms here, often enough to set the p99
        # of single requests. Frozen objects are left out of every later collection.
        gc.collect()
        gc.freeze()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (well or not); True when ready."""
        self._loaded.wait(timeout)
        return self.ready

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self._dtype is None:
            yield
            return
        import torch

        with torch.autocast(device_type="cuda", dtype=self._dtype):
            yield

    def generate(self, prompts: list[str], **sampling: Any) -> list[dict[str, Any]]:
        """Continuations of ``prompts`` from the language model (``to_dict()`` each). The caller has validated them."""
        with self._autocast():
            return [result.to_dict() for result in self.predictors["lm"].generate(prompts, **sampling)]

    def predict(self, task: str, texts: list[str], batch_size: int, **options: Any) -> list[dict[str, Any]]:
        """One result dict (``to_dict()``) per text, in order. The caller has validated ``texts``.

        ``options`` go to the task's ``Predictor.predict`` (e.g. ``return_attention=True`` for translations).
        """
        predictor = self.predictors[task]
        if "beam_size" in inspect.signature(predictor.predict).parameters:  # a model that searches: the server's beam
            options.setdefault("beam_size", self._beam_size)  # (None: the model's own default)
        with self._autocast():
            return [result.to_dict() for result in predictor.predict(texts, batch_size=batch_size, **options)]
