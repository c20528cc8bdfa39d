"""`bilstm label MODEL_DIR INPUT OUTPUT`: argument definitions and entry point (imports stay light).

``--engine ray`` labels many inputs (files, directories, globs, local or ``s3://``) into an OUTPUT directory on a
Ray cluster (:func:`pipelines.ray_files.label_files`); Ray is imported only then (the ``[ray]`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys

from toolkit.argtypes import positive_int
from toolkit.errors import ConfigError

RAY_OPTIONS = ("ray_address", "num_actors", "actor_threads", "num_gpus", "output_format", "s3_endpoint", "s3_region")
LOCAL_OPTIONS = {"device": "--device (Ray actors run on CPUs, or on GPUs with --num-gpus)",
                 "threads": "--threads (use --actor-threads)", "strategy": "--strategy", "accelerator": "--accelerator"}


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir")
    parser.add_argument("input", nargs="+", metavar="INPUT",
                        help=".txt (one text per line), .jsonl (a text field) or CoNLL (taggers); .gz too. With "
                        "--engine ray: one or more files, directories or globs, local or s3://, Parquet too")
    parser.add_argument("output", metavar="OUTPUT", help=".jsonl, or .conll for a tagger reading CoNLL input; bad "
                        "lines go to OUTPUT.errors.jsonl. With --engine ray: a directory (local or s3://)")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl input (Parquet: text column)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--window", type=positive_int,
                        help="lines (CoNLL: sentences) read, length-sorted and committed together (default 4096); "
                        "with --engine ray, rows per actor call (default 1024)")
    parser.add_argument("--max-chars", type=positive_int, help="longest text the model takes (default 20000); longer "
                        "texts go to the errors file (a classifier reading only its first/last N tokens measures "
                        "what it reads)")
    parser.add_argument("--truncate", action="store_true", help="cut texts over --max-chars instead; their records "
                        'say "input_truncated": true')
    parser.add_argument("--restart", action="store_true", help="start over instead of resuming an interrupted job on "
                        "the same OUTPUT (--engine ray: relabel every file)")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    bar.add_argument("--progress", dest="progress", action="store_true",
                     help="progress bar even when stderr is not a terminal")
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: CUDA when available)")
    parser.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's setting)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="onnx: the model directory's model.onnx on ONNX Runtime (bilstm export DIR --onnx)")
    parser.add_argument("--quantize", action="store_true", help="int8: the dynamic-quantized network on the CPU, "
                        "or with --backend onnx the directory's model.int8.onnx (bilstm export DIR --onnx --int8)")
    scale = parser.add_argument_group("data-parallel (Lightning Trainer.predict; one process per device)")
    scale.add_argument("--devices", type=positive_int, default=1, help="processes per node (default 1: no Lightning)")
    scale.add_argument("--num-nodes", type=positive_int, default=1)
    scale.add_argument("--accelerator", help="cpu, gpu, auto (default auto)")
    scale.add_argument("--strategy", help="Lightning strategy (default ddp)")
    ray = parser.add_argument_group("a corpus on a Ray cluster (--engine ray; pip install 'bilstm-toolkit[ray]')")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process (or Lightning DDP); ray: Ray Data actors, one output file per input")
    ray.add_argument("--ray-address", help="auto or HOST:PORT of a running cluster (default: a local Ray instance)")
    ray.add_argument("--num-actors", type=positive_int, help="model actors (default: the cluster's CPUs over "
                     "--actor-threads, less one for reading)")
    ray.add_argument("--actor-threads", type=positive_int, help="torch threads (and Ray CPUs) per actor (default 1)")
    ray.add_argument("--num-gpus", type=_positive_float, help="GPUs per actor (the model runs on CUDA)")
    ray.add_argument("--output-format", choices=("jsonl", "parquet"), help="output files (default jsonl)")
    ray.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
    ray.add_argument("--s3-region", help="S3 region (default: AWS_REGION)")


def _given(args: argparse.Namespace, names: tuple[str, ...] | dict[str, str]) -> list[str]:
    return [name for name in names if getattr(args, name) is not None]


def run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _run_ray(args)
    extra = _given(args, RAY_OPTIONS)
    if extra:
        raise ConfigError(f"--{extra[0].replace('_', '-')} belongs to --engine ray; add --engine ray or drop it")
    if len(args.input) > 1:
        raise ConfigError(f"{len(args.input)} inputs given: the local engine labels one file; label several files, "
                          "directories or globs with --engine ray (OUTPUT a directory)")
    from pipelines.label import label_file

    summary = label_file(args.model_dir, args.input[0], args.output, text_field=args.text_field,
                         batch_size=args.batch_size, window=args.window or 4096, restart=args.restart,
                         progress=args.progress, device=args.device, num_threads=args.threads,
                         devices=args.devices, accelerator=args.accelerator or "auto",
                         strategy=args.strategy or "ddp", num_nodes=args.num_nodes, max_chars=args.max_chars,
                         truncate=args.truncate, backend=args.backend, quantize=args.quantize)
    if summary is not None:  # None: a non-zero rank of a data-parallel job
        print(json.dumps(summary), file=sys.stderr)
    return 0


def _run_ray(args: argparse.Namespace) -> int:
    local = _given(args, LOCAL_OPTIONS)
    if local or args.devices > 1 or args.num_nodes > 1:
        what = LOCAL_OPTIONS[local[0]] if local else "--devices/--num-nodes (Ray places the actors: --num-actors)"
        raise ConfigError(f"{what} does not apply to --engine ray")
    try:
        import ray.data  # noqa: F401 - the optional extra: a clear line instead of a traceback when it is missing

        from pipelines.ray_files import label_files
        from pipelines.ray_sources import Storage
    except ImportError as error:
        raise ConfigError(f"--engine ray needs Ray Data ({error}): pip install 'bilstm-toolkit[ray]'") from None
    summary = label_files(args.model_dir, args.input, args.output, text_field=args.text_field,
                          output_format=args.output_format or "jsonl", batch_size=args.batch_size,
                          window=args.window or 1024, num_actors=args.num_actors,
                          threads_per_actor=args.actor_threads or 1, num_gpus=args.num_gpus or 0,
                          backend=args.backend, quantize=args.quantize, max_chars=args.max_chars,
                          truncate=args.truncate, restart=args.restart, ray_address=args.ray_address,
                          storage=Storage.from_env(args.s3_endpoint, args.s3_region), progress=args.progress)
    print(json.dumps(summary), file=sys.stderr)
    return 0
