"""What the spaCy components share: a model directory, a lazily loaded Predictor, batching, saving and loading.

The components themselves (one per task) and their factories are in :mod:`toolkit.spacy_component`.

Worker processes (``nlp.pipe(texts, n_process=N)``): a component's Predictor belongs to the process that loaded it.
A Predictor made before a fork carries that process's thread pools: torch's OpenMP team (libgomp) and ONNX Runtime's
pool, whose threads do not exist in the forked child. libgomp then waits forever for them at the child's first
parallel region (a BiLSTM forward pass, even a softmax), which is how ``n_process=2`` used to hang with no output
once the parent had loaded or run a model (``spacy.load`` alone was enough). With spawn/forkserver
the component is pickled instead, and an ONNX Runtime session cannot be pickled at all. So in any process other
than the one that built the component (see :class:`_ProcessState`), the component runs its Predictor on a thread
started in that process: a new thread has no OpenMP team, so libgomp starts a fresh one. The Predictor is the
process's own: loaded there, or, in a forked child, the parent's torch network on the CPU, which is plain memory
(:meth:`ModelDirPipe._adoptable`). Each worker uses ``num_threads`` torch/ONNX Runtime threads, 1 unless set, so N
processes do not oversubscribe the CPU. A forked server worker (a pre-fork server loading the pipeline once) is such
a process too.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import typing
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.util import minibatch

from toolkit.artifact import META_FILE, ModelMeta, check_files, read_meta, replace_directory
from toolkit.errors import ModelDirError
from toolkit.registry import TASKS

if TYPE_CHECKING:
    from toolkit.predict import Predictor

MODEL_SUBDIR = "model"
"""Where ``to_disk`` puts the model directory inside the component's folder of a saved pipeline."""

WORKER_THREADS = 1
"""torch (and ONNX Runtime) intra-op threads of a component in a worker process when ``num_threads`` is None:
``n_process`` workers × 1 thread use the cores the processes were asked for, with no oversubscription."""


_INHERITED: list[object] = []
"""What forked children took over from their parent's components, kept referenced (see :meth:`_ProcessState.here`)."""


class _ProcessState:
    """What a component holds for the process it runs in: its Predictor and, in a worker process, its model thread.

    Nothing of it is used outside its process. A pickled copy (what spawn and forkserver send a worker) unpickles as a
    fresh, empty state; a forked child finds a stale one (another pid) and starts over. ``home_pid`` is the
    process that built the component, kept through pickling: any other process is a worker.
    """

    def __init__(self, home_pid: int | None = None) -> None:
        self.home_pid = os.getpid() if home_pid is None else home_pid
        self.pid = os.getpid()
        self.predictor: Predictor | None = None
        self.model_thread: ThreadPoolExecutor | None = None
        self.inherited: Predictor | None = None
        """The parent's Predictor, in a forked child (which may adopt it: :meth:`ModelDirPipe._adoptable`)."""

    def __reduce__(self) -> tuple[type[_ProcessState], tuple[int]]:
        return _ProcessState, (self.home_pid,)

    def here(self) -> _ProcessState:
        """This state for the current process: emptied first if it was inherited through a fork.

        What the parent held is kept alive, never freed, in the child: freeing an ONNX Runtime session there waits
        forever in its destructor for the session's pool threads, which stayed in the parent. The memory is the
        parent's, shared copy-on-write, so keeping it copies nothing.
        """
        if self.pid != os.getpid():
            if self.predictor is not None or self.model_thread is not None:
                _INHERITED.append((self.predictor, self.model_thread))
            self.inherited = self.predictor
            self.pid, self.predictor, self.model_thread = os.getpid(), None, None
        return self

    @property
    def in_worker(self) -> bool:
        """Whether this is a process other than the one that built the component (a ``n_process`` worker)."""
        return os.getpid() != self.home_pid


def _set_torch_threads(threads: int) -> None:
    """Runs first on a worker's model thread: OpenMP's thread count is per thread, so it is set there."""
    import torch

    torch.set_num_threads(threads)


class ModelDirPipe(Pipe):
    """Shared plumbing: a model directory, a lazily loaded Predictor, batching and serialisation."""

    task: ClassVar[str] = ""
    """The task whose model directories it reads; set by :func:`register_factory` from the task table."""
    factory: ClassVar[str] = ""
    """Its factory name (the task table's ``spacy_factory``); set by :func:`register_factory`."""
    assigns: ClassVar[tuple[str, ...]] = ()
    """What it writes on a Doc (spaCy's ``assigns``)."""
    score_weights: ClassVar[dict[str, float | None] | None] = None
    """spaCy's ``default_score_weights`` of the component, if it scores."""

    def __init__(self, nlp: Language, name: str, model: str | None, *, batch_size: int = 64,
                 device: str | None = None, max_chars: int | None = None, truncate: bool = False,
                 backend: str = "torch", num_threads: int | None = None) -> None:
        """
        Args:
            nlp: the pipeline (its vocab is shared).
            name: the component's name in the pipeline.
            model: a model directory written by ``bilstm fit`` (or ``toolkit.artifact.save_model_dir``).
            batch_size: texts per forward pass inside the Predictor.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; None = CUDA when available.
            max_chars: longest doc text the model takes (None = the Predictor's default, 20,000 characters);
                a longer doc raises :class:`~toolkit.errors.InputError` naming it, unless ``truncate``.
            truncate: annotate only the start of a longer doc (the part up to ``max_chars``).
            backend: ``"torch"`` or ``"onnx"`` (the directory's ONNX export on ONNX Runtime: ``bilstm export DIR
                --onnx``).
            num_threads: torch (and ONNX Runtime) intra-op threads. None: in the process that built the component,
                torch's own setting (a number sets it process-wide, as ``torch.set_num_threads``); in each worker
                process of ``nlp.pipe(n_process=N)``, :data:`WORKER_THREADS` (1), so N workers use N cores.

        Raises:
            ModelDirError: no ``model`` given, or it exists but is not a valid model directory of this task.
        """
        if model is None or not str(model).strip():
            raise ModelDirError(
                f"{self.factory} component {name!r} needs a model directory: "
                f"nlp.add_pipe({self.factory!r}, config={{'model': 'path/to/model'}}) "
                f"(the folder `bilstm fit` prints at the end)")
        if batch_size < 1:
            raise ValueError(f"{self.factory} component {name!r}: batch_size must be >= 1, got {batch_size}")
        if device is not None:
            from toolkit.predict.base import resolve_device  # imports torch, which loading needs anyway

            try:
                resolve_device(device)
            except (ModelDirError, RuntimeError) as error:
                raise ModelDirError(f"{self.factory} component {name!r}: {error} (device=None picks CUDA when "
                                    "available; spacy.load(path, config={'components.NAME.device': 'cpu'}) "
                                    "overrides a saved setting)") from None
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"{self.factory} component {name!r}: max_chars must be >= 1 or None, got {max_chars}")
        if num_threads is not None and (isinstance(num_threads, bool) or num_threads < 1):
            raise ValueError(f"{self.factory} component {name!r}: num_threads must be >= 1 or None, "
                             f"got {num_threads}")
        self.name = name
        self.vocab = nlp.vocab
        self.batch_size = batch_size
        self.device = device
        self.max_chars = max_chars
        self.truncate = truncate
        self.backend = backend
        self.num_threads = num_threads
        self.model_path = Path(model)
        check_now = self.model_path.exists() and not _rebuilding_a_saved_pipeline()
        self.meta: ModelMeta | None = self.check_model_dir(self.model_path) if check_now else None
        self._process = _ProcessState()

    # ---- the model directory -------------------------------------------------------------------------------

    def check_model_dir(self, path: Path) -> ModelMeta:
        """Read ``meta.json`` and check the task; returns the meta.

        Raises:
            ModelDirError: the directory is missing, invalid, or holds a model of another task.
        """
        meta = read_meta(path)
        if meta.task != self.task:
            raise ModelDirError(
                f"{path} holds a {meta.task!r} model, but {self.factory} ({self.name!r}) needs a {self.task!r} "
                f"model; add it with nlp.add_pipe({TASKS[meta.task].spacy_factory!r}, config={{'model': ...}})")
        return meta

    @property
    def predictor(self) -> Predictor:
        """This process's Predictor, loaded on first use in each process (``device`` None = CUDA when available)."""
        state = self._process.here()
        if state.predictor is None and self._adoptable(state.inherited):
            state.predictor = state.inherited
        if state.predictor is None:
            if not self.model_path.exists():
                raise ModelDirError(
                    f"{self.factory} component {self.name!r}: model directory not found: {self.model_path} "
                    f"(set config={{'model': ...}} to a directory written by `bilstm fit`)")
            self.meta = self.check_model_dir(self.model_path)
            from toolkit.predict import Predictor

            state.predictor = Predictor.load(self.model_path, device=self.device, max_chars=self.max_chars,
                                             truncate=self.truncate, backend=self.backend,
                                             num_threads=self._threads(state))
        return state.predictor

    def _adoptable(self, inherited: Predictor | None) -> bool:
        """Whether a forked child can use its parent's Predictor rather than load its own.

        A torch network on the CPU is plain memory (shared copy-on-write, with the tokenizer's warm memory): it
        works in the child on a thread that never joined an OpenMP team (:meth:`_predict`), and spares each worker
        of each ``nlp.pipe`` call the load (about half a second, most of it building spaCy's tokenizer). An ONNX
        Runtime session's pool threads stayed in the parent, and CUDA does not survive a fork: those are reloaded.
        """
        return (inherited is not None and self.backend == "torch" and inherited.device.type == "cpu"
                and self._process.in_worker)

    def _threads(self, state: _ProcessState) -> int | None:
        """Intra-op threads in this process (None: leave torch's setting)."""
        return (self.num_threads or WORKER_THREADS) if state.in_worker else self.num_threads

    def _predict(self, docs: list[Doc]) -> list[Any]:
        """:meth:`predict`, on this process's model thread in a worker process (see the module docstring)."""
        state = self._process.here()
        if not state.in_worker:
            return self.predict(docs)
        if state.model_thread is None:
            state.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-model",
                                                    initializer=_set_torch_threads,
                                                    initargs=(self._threads(state),))
        return state.model_thread.submit(self.predict, docs).result()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.meta.labels or ()) if self.meta is not None else ()

    # ---- inference -----------------------------------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> list[Any]:
        """Run the model on a batch of docs without modifying them; one prediction per doc."""
        raise NotImplementedError

    def set_annotations(self, docs: Iterable[Doc], predictions: list[Any]) -> None:
        """Write the predictions of :meth:`predict` onto the docs."""
        raise NotImplementedError

    def __call__(self, doc: Doc) -> Doc:
        """Annotate one doc in place and return it."""
        error_handler = self.get_error_handler()
        try:
            self.set_annotations([doc], self._predict([doc]))
            return doc
        except Exception as error:
            error_handler(self.name, self, [doc], error)

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs, ``batch_size`` docs per Predictor call; yields them in order."""
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self._predict(docs))
                yield from docs
            except Exception as error:
                error_handler(self.name, self, docs, error)

    # ---- serialisation -------------------------------------------------------------------------------------

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Copy the model directory (``meta.json`` and the files it lists) to ``path/model``.

        The saved pipeline is self-contained: it no longer needs the original model directory. An
        existing ``path/model`` is replaced only once the new copy is complete.
        """
        source = self.model_path
        files = self.check_model_dir(source).files
        target = Path(path) / MODEL_SUBDIR
        if target.exists() and target.resolve() == source.resolve():
            return  # saving a pipeline back where it was loaded from
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_SUBDIR}.tmp-", dir=target.parent))
        try:
            for name in [META_FILE, *files]:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, staging / name)
            check_files(staging, files)  # the copy is what the model directory's checksums say it is
            staging.chmod(0o755)
            replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ModelDirPipe:
        """Load the model directory saved by :meth:`to_disk` (at once, so a broken copy fails here)."""
        model_path = Path(path) / MODEL_SUBDIR
        if not model_path.is_dir():
            raise ModelDirError(f"{path} has no {MODEL_SUBDIR!r} folder; it was not written by {self.factory}.to_disk")
        self.meta = self.check_model_dir(model_path)
        self.model_path = model_path
        self._process.here().predictor = None
        self.predictor  # noqa: B018 - load now
        return self


def _rebuilding_a_saved_pipeline() -> bool:
    """Whether spaCy is re-creating the components of a saved pipeline (``spacy.load(path)``).

    Then ``from_disk`` follows at once with the model copy saved in the pipeline, and the ``model`` setting only
    names where the model came from. spaCy passes no flag for this, so the call stack is asked: every saved
    pipeline (a path, or an installed package) is read by ``spacy.util.load_model_from_path``.
    """
    import sys

    from spacy.util import load_model_from_path

    target = load_model_from_path.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is target:
            return True
        frame = frame.f_back
    return False


def factory_function_name(factory: str) -> str:
    """The module attribute a factory is exposed as (``bilstm_ner`` → ``make_ner``): the entry points' target."""
    return "make_" + factory.removeprefix("bilstm_")


def register_factory(task: str, factory: str, component: type[ModelDirPipe]) -> Any:
    """Register ``factory`` with spaCy for ``component``, reading ``task``'s model directories; returns the function.

    The factory's settings are the keyword arguments of ``component.__init__`` after ``model``, with their defaults
    and types (spaCy validates a config against the function's signature), so a component declares its settings
    once, in Python.
    """
    component.task, component.factory = task, factory
    init = inspect.signature(component.__init__)
    hints = typing.get_type_hints(component.__init__)
    settings = [parameter for name, parameter in init.parameters.items() if name not in ("self", "nlp", "name")]
    parameters = [inspect.Parameter("nlp", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Language),
                  inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    parameters += [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hints[p.name])
                   for p in settings]

    def make(nlp: Language, name: str, **config: Any) -> ModelDirPipe:
        return component(nlp, name, **config)

    make.__name__ = make.__qualname__ = factory_function_name(factory)
    make.__doc__ = f"The ``{factory}`` component: {(component.__doc__ or '').strip().splitlines()[0]}"
    make.__signature__ = inspect.Signature(parameters, return_annotation=component)  # type: ignore[attr-defined]
    make.__annotations__ = {**{p.name: p.annotation for p in parameters}, "return": component}
    defaults = {p.name: None if p.default is inspect.Parameter.empty else p.default for p in settings}
    Language.factory(factory, default_config=defaults, assigns=list(component.assigns),
                     default_score_weights=component.score_weights or {})(make)
    return make
