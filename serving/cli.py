"""`bilstm serve MODEL_DIR [MODEL_DIR ...] --port P`: check the models, then run ``bentoml serve``.

The command only turns its options into the ``BILSTM_*`` environment variables that
``serving/service.py`` reads (see ``serving/settings.py``) and replaces itself with
``python -m bentoml serve serving.service:BilstmService``; so ``bilstm serve`` and a plain
``bentoml serve`` with the same variables run the very same service.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from toolkit.argtypes import port_number, positive_int

SERVICE = "serving.service:BilstmService"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bilstm serve`` (no heavy imports here)."""
    parser.add_argument("model_dirs", nargs="*", metavar="MODEL_DIR",
                        help="model directories to serve (one per task of the task table)")
    parser.add_argument("--model-tag", action="append", default=[], metavar="TAG",
                        help="a model imported into the BentoML store (python -m serving.import_model); repeatable")
    parser.add_argument("--port", type=port_number, default=3000, help="TCP port, 1..65535 (default 3000)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    batching = parser.add_argument_group("adaptive batching and workers (defaults: see docs/serving.md)")
    batching.add_argument("--max-batch-size", type=positive_int,
                          help="most texts in one model call (BILSTM_MAX_BATCH_SIZE)")
    batching.add_argument("--max-latency-ms", type=positive_int,
                          help="queueing budget before BentoML sheds a request with 503 (BILSTM_MAX_LATENCY_MS)")
    batching.add_argument("--workers", type=positive_int, help="CPU worker processes (BILSTM_WORKERS)")
    batching.add_argument("--threads", type=positive_int, help="torch threads per CPU worker (BILSTM_THREADS)")
    batching.add_argument("--gpus", type=positive_int, help="one worker and model copy per GPU (BILSTM_GPUS)")
    batching.add_argument("--device", choices=("auto", "cpu", "cuda"), help="BILSTM_DEVICE")
    batching.add_argument("--backend", choices=("torch", "onnx"),
                          help="onnx: each model's model.onnx on ONNX Runtime, CPU (BILSTM_BACKEND; bilstm export)")
    batching.add_argument("--precision", choices=("fp32", "bf16", "fp16"),
                          help="autocast dtype on CUDA (BILSTM_PRECISION)")
    limits = parser.add_argument_group("request limits and overload (docs/serving.md, \"Overload\")")
    limits.add_argument("--max-texts", type=positive_int, help="most texts per request (BILSTM_MAX_TEXTS)")
    limits.add_argument("--max-chars", type=positive_int, help="most characters per text (BILSTM_MAX_CHARS)")
    limits.add_argument("--beam-size", type=positive_int,
                        help="beam size of /translate, at most 64 (BILSTM_TRANSLATE_BEAM_SIZE)")
    limits.add_argument("--max-new-tokens", type=positive_int,
                        help="most tokens /generate may ask for per prompt, at most 2048 (BILSTM_MAX_NEW_TOKENS)")
    limits.add_argument("--max-in-flight", type=positive_int,
                        help="requests one route admits per worker, running + queued; more get 429 "
                             "(BILSTM_MAX_IN_FLIGHT)")
    limits.add_argument("--generate-concurrency", type=positive_int,
                        help="/generate requests the generation worker runs at once (BILSTM_GENERATE_CONCURRENCY)")
    limits.add_argument("--generate-max-in-flight", type=positive_int,
                        help="/generate requests admitted per worker, running + queued; more get 429 "
                             "(BILSTM_GENERATE_MAX_IN_FLIGHT)")
    limits.add_argument("--timeout-s", type=positive_int, help="request timeout in seconds (BILSTM_TIMEOUT_S)")
    parser.add_argument("--no-access-log", action="store_true", help="no log line per request (BILSTM_ACCESS_LOG=0)")
    parser.add_argument("--no-metrics", action="store_true", help="no Prometheus /metrics (BILSTM_METRICS=0)")
    parser.add_argument("--dry-run", action="store_true", help="check the models and print the command; do not serve")


OPTIONS = {  # argparse destination → environment variable
    "max_batch_size": "BILSTM_MAX_BATCH_SIZE", "max_latency_ms": "BILSTM_MAX_LATENCY_MS",
    "workers": "BILSTM_WORKERS", "threads": "BILSTM_THREADS", "gpus": "BILSTM_GPUS", "device": "BILSTM_DEVICE",
    "precision": "BILSTM_PRECISION", "max_texts": "BILSTM_MAX_TEXTS", "max_chars": "BILSTM_MAX_CHARS",
    "beam_size": "BILSTM_TRANSLATE_BEAM_SIZE", "backend": "BILSTM_BACKEND", "max_new_tokens": "BILSTM_MAX_NEW_TOKENS",
    "max_in_flight": "BILSTM_MAX_IN_FLIGHT", "generate_concurrency": "BILSTM_GENERATE_CONCURRENCY",
    "generate_max_in_flight": "BILSTM_GENERATE_MAX_IN_FLIGHT", "timeout_s": "BILSTM_TIMEOUT_S",
}


def build_env(args: argparse.Namespace, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the ``bentoml serve`` process, checked like the service will check it.

    Raises:
        ToolkitError: no models, a directory that is not a model directory or does not load (weights that do
            not fit its config, a missing or corrupt file), two models for one task, or a bad option value;
            the message names it.
    """
    from serving.registry import resolve_sources
    from serving.settings import ServeSettings
    from toolkit.errors import ConfigError
    from toolkit.predict import Predictor

    env = dict(os.environ if base is None else base)
    dirs = [str(Path(d).resolve()) for d in args.model_dirs]
    if not dirs and not args.model_tag:
        raise ConfigError("give at least one MODEL_DIR (or --model-tag TAG of a model in the BentoML store)")
    paths: list[tuple[str, str]] = [(d, d) for d in dirs]
    if args.model_tag:
        import bentoml

        for tag in args.model_tag:
            try:
                paths.append((bentoml.models.get(tag).path, f"BentoML model {tag}"))
            except (ValueError, bentoml.exceptions.BentoMLException) as error:
                if not isinstance(error, bentoml.exceptions.NotFound):
                    raise ConfigError(f"--model-tag {tag!r} is not a valid BentoML tag ({error}); "
                                      "use NAME or NAME:VERSION, e.g. bilstm-textcat:latest") from None
                store = os.environ.get("BENTOML_HOME", "~/bentoml")
                raise ConfigError(f"no model {tag!r} in the BentoML store ({store}); import one with "
                                  "`python -m serving.import_model MODEL_DIR`") from None
    for source in resolve_sources(paths):  # every directory readable, one model per task
        # Load each model once here, weights against config, so a broken one stops the command now instead of
        # leaving a server that answers 503 forever (the workers load again, on their own devices).
        Predictor.load(source.path, device="cpu",
                       backend=args.backend or env.get("BILSTM_BACKEND", "").strip().lower() or "torch")
    env["BILSTM_MODEL_DIRS"] = os.pathsep.join(dirs)
    env["BILSTM_BENTO_MODELS"] = ",".join(args.model_tag)
    for option, variable in OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            env[variable] = str(value)
    if args.no_access_log:
        env["BILSTM_ACCESS_LOG"] = "0"
    if args.no_metrics:
        env["BILSTM_METRICS"] = "0"
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    settings = ServeSettings.from_env(env)  # raises ConfigError on a bad value, before BentoML starts
    if settings.gpus and settings.device == "cpu":
        raise ConfigError("--gpus and --device cpu contradict each other")
    return env


def command(args: argparse.Namespace) -> list[str]:
    """The ``bentoml serve`` command line."""
    working_dir = Path(__file__).resolve().parents[1]  # the directory holding the serving package
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", args.host, "--port", str(args.port),
            "--working-dir", str(working_dir)]


def run(args: argparse.Namespace) -> int:
    """Check the models and options, then exec ``bentoml serve`` (it never returns unless ``--dry-run``)."""
    env = build_env(args)
    argv = command(args)
    if args.dry_run:
        shown = {k: v for k, v in env.items() if k.startswith("BILSTM_") and v}
        print(" ".join(f"{k}={v!r}" for k, v in sorted(shown.items())), " ".join(argv))
        return 0
    print(f"bilstm serve: http://{args.host}:{args.port} (POST /classify, /tag, /translate, /score, /generate; "
          "GET /readyz, /docs, /ui)",
          file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)
    return 0  # not reached
