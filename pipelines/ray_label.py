"""Batch labelling on Ray Data: a pool of actors, each loading the model directory once, adds prediction columns.

    import ray
    from pipelines.ray_label import label_dataset

    ds = ray.data.read_parquet("s3://bucket/reviews/")               # any Dataset with a "text" column
    labelled = label_dataset(ds, "runs/textcat_imdb/model", num_actors=4)
    labelled.write_parquet("s3://bucket/labelled/")                  # + label, score, probabilities, error

Each actor runs the single-file job's own labelling (:meth:`pipelines.job.LabelJob.label`: the same screen of
unusable texts, the same length-sorted batches inside a Ray batch, the same records), so a row's prediction is
the one ``bilstm label`` writes for it. A row the predictor refuses (not a string, empty, a lone surrogate, over
``max_chars``) gets its reason in the ``error`` column and null predictions, and the job goes on. The whole-corpus
command over files and object storage (``bilstm label ... --engine ray``) is
:func:`pipelines.ray_files.label_files`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.job import LabelJob
from pipelines.sources import DocStart, Position, Sentence, Text, Window, reads_tokens
from toolkit.errors import ConfigError

OUTPUTS = ("columns", "json")
TOKENS_FIELDS = [pa.field("tokens", pa.list_(pa.string())), pa.field("tags", pa.list_(pa.string())),
                 pa.field("input_truncated", pa.bool_())]
"""What a tagger adds for a pre-tokenised sentence: the fields of ``bilstm label``'s CoNLL → JSONL record."""
_LINE = re.compile(rb'^\{"line": (\d+)')


def arrow_type(hint: Any) -> pa.DataType:
    """The Arrow type of a result field's annotation: str, float, int, bool, list[X], dict[K, V], a dataclass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in args if arg is not type(None)]
        return arrow_type(inner)
    scalars = {str: pa.string(), float: pa.float64(), bool: pa.bool_(), int: pa.int64()}
    if hint in scalars:
        return scalars[hint]
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    if origin is dict:
        return pa.map_(arrow_type(args[0]), arrow_type(args[1]))
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return pa.struct([pa.field(f.name, arrow_type(hints[f.name])) for f in dataclasses.fields(hint)])
    raise TypeError(f"no Arrow type for the result field annotation {hint!r}")


def prediction_fields(task: str, tokens: bool = False) -> list[pa.Field]:
    """The columns a ``task`` model adds to a row: its result dataclass's fields (those that may be None, such
    as a translation's attention, which batch labelling never asks for, are left out); for a pre-tokenised
    sentence (``tokens``), :data:`TOKENS_FIELDS`. Flags (``input_truncated``) are false, never missing."""
    if tokens:
        return list(TOKENS_FIELDS)
    from toolkit.registry import TASKS, load_piece

    result = load_piece(TASKS[task].result)
    hints = typing.get_type_hints(result)
    optional = [f.name for f in dataclasses.fields(result) if type(None) in typing.get_args(hints[f.name])]
    return [pa.field(f.name, arrow_type(hints[f.name])) for f in dataclasses.fields(result) if f.name not in optional]


def model_files(model_dir: str | Path) -> dict[str, bytes]:
    """meta.json and every file it lists, as bytes: what an actor on another machine rebuilds the directory from."""
    from toolkit.artifact import META_FILE, check_files, read_meta

    root = Path(model_dir)
    meta = read_meta(root)
    check_files(root, meta.files)  # a corrupt directory is refused here, not in every actor
    return {name: (root / name).read_bytes() for name in [META_FILE, *meta.files]}


class Labeller:
    """The callable class ``map_batches`` runs in each actor: loads the model once, labels pyarrow batches.

    Args:
        model: the model directory's path, or its files (:func:`model_files`, or an object reference to them),
            written to a temporary directory here, so the actor's machine needs no copy of the directory.
        text_column, tokens_column, document_column: where a row's text, or its pre-tokenised sentence (a
            tagger; a row whose tokens are null is read as a text) and that sentence's document (its neighbours
            give a tagger with document context its context), are.
        fields: the prediction columns (:func:`prediction_fields`, both kinds for a tagger given both columns).
        output: ``columns`` (typed prediction columns) or ``json`` (a ``record`` column holding the JSON record
            ``bilstm label`` writes, its ``line`` the row's ``line`` column; the files command writes these).
        The rest are :meth:`toolkit.predict.Predictor.load`'s and the job's batch size (texts per forward pass).
    """

    def __init__(self, model: Any, *, text_column: str, tokens_column: str | None,
                 document_column: str | None, fields: list[pa.Field], output: str, batch_size: int, threads: int,
                 device: str, backend: str, quantize: bool, max_chars: int | None, truncate: bool) -> None:
        import ray

        from toolkit.native_memory import release_large_allocations
        from toolkit.predict import Predictor

        release_large_allocations()
        self._folder = None
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        if isinstance(model, dict):
            self._folder = tempfile.TemporaryDirectory(prefix="bilstm-model-")
            for name, data in model.items():
                path = Path(self._folder.name) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            model = self._folder.name
        predictor = Predictor.load(model, device=device, num_threads=threads, quantize=quantize,
                                   max_chars=max_chars, truncate=truncate, backend=backend)
        self.jobs = {kind: LabelJob(predictor, kind, False, batch_size, backend, quantize) for kind in ("txt", "conll")}
        self.text_column, self.tokens_column, self.document_column = text_column, tokens_column, document_column
        self.fields, self.output = fields, output

    def __call__(self, batch: pa.Table) -> pa.Table:
        names = set(batch.column_names)
        size = batch.num_rows

        def column(name: str | None) -> list[Any]:
            return batch.column(name).to_pylist() if name in names else [None] * size

        texts, sentences, documents = column(self.text_column), column(self.tokens_column), column(self.document_column)
        errors: list[str | None] = column("error")
        text_items, sentence_items, document = [], [], object()
        for row in range(size):
            if errors[row] is not None:
                continue  # read as unusable before it came here: passed through
            if sentences[row] is not None:
                if documents[row] != document:  # the job counts a sentence's document from -DOCSTART- lines
                    sentence_items.append(DocStart(row, ""))
                    document = documents[row]
                sentence_items.append(Sentence(row, [], list(sentences[row])))
            else:
                text_items.append(Text(row, texts[row]))
        records: list[bytes | None] = [None] * size
        for kind, items in (("txt", text_items), ("conll", sentence_items)):
            if items:
                chunk = self.jobs[kind].label(Window(Position(), Position(), items))
                for line in chunk.data.splitlines():
                    records[int(_LINE.match(line).group(1))] = line
                for line in chunk.errors.splitlines():
                    problem = json.loads(line)
                    errors[problem["line"]] = problem["reason"]
        return self._attach(batch, records, errors, column("line"))

    def _attach(self, batch: pa.Table, records: list[bytes | None], errors: list[str | None],
                lines: list[Any]) -> pa.Table:
        """``batch`` with the prediction columns (or the ``record`` column) and ``error`` set."""
        if self.output == "json":
            columns = {"record": pa.array([None if record is None else (
                b'{"line": %d' % (row if lines[row] is None else lines[row])
                + record[_LINE.match(record).end():]).decode("utf-8")
                for row, record in enumerate(records)], pa.string())}
        else:
            parsed = [None if record is None else json.loads(record) for record in records]
            columns = {field.name: pa.array([None if item is None else item.get(
                field.name, False if field.type == pa.bool_() else None) for item in parsed], field.type)
                for field in self.fields}
        columns["error"] = pa.array(errors, pa.string())
        for name, values in columns.items():
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, values)
            else:
                batch = batch.append_column(name, values)
        return batch


def label_dataset(ds: Any, model_dir: str | Path, *, text_column: str = "text", tokens_column: str | None = None,
                  document_column: str | None = None, batch_size: int = 64, window: int = 1024,
                  num_actors: int | tuple[int, int] = 1, num_gpus: float = 0, threads_per_actor: int = 1,
                  backend: str = "torch", quantize: bool = False, max_chars: int | None = None,
                  truncate: bool = False, ship_model: bool = True, output: str = "columns") -> Any:
    """``ds`` with the model's prediction columns and an ``error`` column added (lazily: a Ray Dataset).

    Args:
        ds: a ``ray.data.Dataset`` with a ``text_column`` (strings) and/or a ``tokens_column`` (lists of tokens,
            taggers only; rows whose tokens are null are read as texts). Its other columns are kept. A row that
            arrives with a non-null ``error`` column is passed through unlabelled.
        model_dir: a model directory (``bilstm fit``).
        document_column: with ``tokens_column``, each sentence's document: a tagger with document context reads
            the sentences of one document that share a Ray batch beside each other (keep documents together).
        batch_size: texts per forward pass. window: rows per actor call (the model length-sorts them into
            batches, as ``bilstm label`` does a window).
        num_actors: actors in the pool, or ``(min, max)`` for an autoscaling pool; each loads the model once.
        num_gpus: GPUs per actor (the model then runs on CUDA); threads_per_actor: torch threads and Ray CPUs
            per actor.
        backend, quantize, max_chars, truncate: as :meth:`toolkit.predict.Predictor.load`.
        ship_model: send the directory's files to the actors through Ray's object store (no shared filesystem
            needed); False: every node reads ``model_dir`` itself.
        output: ``columns`` or ``json`` (see :class:`Labeller`).

    Columns added: a classifier's ``label``, ``score``, ``probabilities`` (a map label → probability); a
    tagger's ``entities``, ``tokens``, ``tags`` (a sentence: ``tokens``, ``tags``); a translator's ``source``,
    ``translation``, ``score``, ``truncated``; a language model's ``perplexity``, ``log_likelihood``, ``tokens``,
    ``token_log_probs``; and ``input_truncated`` (false unless ``truncate`` cut the text). Null where ``error``.

    Raises:
        ConfigError: an output or option that cannot work (a tokens column for a model that reads only texts,
            a prediction column that would overwrite a column of ``ds``…).
        ModelDirError: a missing or corrupt model directory (checked here, before any actor starts).
    """
    import ray

    from toolkit.artifact import read_meta

    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if num_gpus and (backend == "onnx" or quantize):
        raise ConfigError("--backend onnx and --quantize run on the CPU: drop --num-gpus")
    task = read_meta(model_dir).task
    if tokens_column is not None and not reads_tokens(task):
        raise ConfigError(f"tokens_column needs a tagger model (one that reads pre-tokenised sentences); {model_dir} "
                          f"is a {task!r} model, which reads raw texts")
    fields = prediction_fields(task)
    if tokens_column is not None:
        fields += [f for f in prediction_fields(task, tokens=True) if f.name not in {g.name for g in fields}]
    schema = ds.schema(fetch_if_missing=False)  # None until the dataset has run: then only the actors can check
    if schema is not None and text_column not in schema.names and tokens_column not in schema.names:
        wanted = " or ".join(repr(name) for name in (text_column, tokens_column) if name)
        raise ConfigError(f"the dataset has no column {wanted} (columns: {', '.join(schema.names)}): set text_column")
    added = ["record"] if output == "json" else [field.name for field in fields]
    clash = sorted(set(added) & set(schema.names if schema is not None else ()))
    if clash:
        raise ConfigError(f"the dataset already has the column(s) {', '.join(clash)} that labelling adds: rename them "
                          "first (ds.rename_columns({...}))")
    if backend == "onnx" or quantize:  # options a valid directory can still refuse: once here, not in every actor
        from toolkit.predict import Predictor

        Predictor.load(model_dir, device="cpu", quantize=quantize, backend=backend)
    model: Any = ray.put(model_files(model_dir)) if ship_model else str(model_dir)
    pool = (ray.data.ActorPoolStrategy(min_size=num_actors[0], max_size=num_actors[1])
            if isinstance(num_actors, tuple) else ray.data.ActorPoolStrategy(size=num_actors))
    return ds.map_batches(
        Labeller, batch_size=window, batch_format="pyarrow", compute=pool, num_cpus=threads_per_actor,
        num_gpus=num_gpus or None,
        fn_constructor_args=(model,),
        fn_constructor_kwargs={"text_column": text_column, "tokens_column": tokens_column,
                               "document_column": document_column, "fields": fields, "output": output,
                               "batch_size": batch_size, "threads": threads_per_actor,
                               "device": "cuda" if num_gpus else "cpu", "backend": backend, "quantize": quantize,
                               "max_chars": max_chars, "truncate": truncate})
