"""Serving configuration, read from environment variables (configuration, not code).

``bilstm serve`` sets these before it starts ``bentoml serve``; with plain ``bentoml serve`` (or in a
container) set them yourself. Everything has a default except the models to serve.

=============================  ============  ==========================================================
variable                       default       meaning
=============================  ============  ==========================================================
BILSTM_MODEL_DIRS              (none)        model directories, separated by ``os.pathsep`` (``:``)
BILSTM_BENTO_MODELS            (none)        BentoML model-store tags (``bilstm-textcat:latest``), by ``,``
BILSTM_MAX_TEXTS               64            most texts in one request (more → 413)
BILSTM_MAX_CHARS               5000          most characters in one text (more → 413)
BILSTM_MAX_BATCH_SIZE          64            adaptive batching: most texts run together
BILSTM_MAX_LATENCY_MS          2000          adaptive batching: queueing budget before a 503 (see docs)
BILSTM_MAX_IN_FLIGHT           256           requests one route admits per worker (running + queued; more → 429)
BILSTM_GENERATE_CONCURRENCY    1             /generate requests the generation worker runs at once
BILSTM_GENERATE_MAX_IN_FLIGHT  16            /generate requests admitted per worker (running + queued; more → 429)
BILSTM_WORKERS                 1             worker processes on CPU (each loads every model)
BILSTM_THREADS                 1             torch intra-op threads per CPU worker
BILSTM_GPUS                    0             GPUs: one worker and one model copy per GPU (``cuda:i``)
BILSTM_DEVICE                  auto          ``auto`` (CUDA when the worker has a GPU), ``cpu`` or ``cuda``
BILSTM_PRECISION               fp32          ``fp32``, ``bf16`` or ``fp16``: autocast on CUDA (ignored on CPU)
BILSTM_BACKEND                 torch         ``torch`` or ``onnx`` (each model's ``model.onnx``, CPU; ``bilstm export``)
BILSTM_TRANSLATE_BEAM_SIZE     (model's)     beam size for /translate (1 = greedy; at most 64)
BILSTM_MAX_NEW_TOKENS          256           most tokens /generate may ask for per prompt (at most 2048)
BILSTM_TIMEOUT_S               60            request timeout (BentoML traffic.timeout)
BILSTM_ACCESS_LOG              1             ``0`` turns off BentoML's per-request access log line
BILSTM_METRICS                 1             ``0`` turns off BentoML's Prometheus ``/metrics`` (and its cost)
=============================  ============  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from toolkit.errors import ConfigError
from toolkit.limits import MAX_NEW_TOKENS, MAX_SERVE_BEAM_SIZE

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("torch", "onnx")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return _choice(env, name, ("1", "0", "true", "false", "yes", "no")) in ("1", "true", "yes")


@dataclass(frozen=True)
class ServeSettings:
    """Everything the service needs to know, validated once at import time."""

    model_dirs: tuple[str, ...] = ()
    bento_models: tuple[str, ...] = ()
    max_texts: int = 64
    max_chars: int = 5000
    max_batch_size: int = 64
    max_latency_ms: int = 2000
    max_in_flight: int = 256
    generate_concurrency: int = 1
    generate_max_in_flight: int = 16
    workers: int = 1
    threads: int = 1
    gpus: int = 0
    device: str = "auto"
    precision: str = "fp32"
    backend: str = "torch"
    translate_beam_size: int | None = None
    max_new_tokens: int = 256
    timeout_s: int = 60
    access_log: bool = True
    metrics: bool = True

    def __post_init__(self) -> None:
        if self.generate_max_in_flight < self.generate_concurrency:
            raise ConfigError(f"BILSTM_GENERATE_MAX_IN_FLIGHT={self.generate_max_in_flight} is below "
                              f"BILSTM_GENERATE_CONCURRENCY={self.generate_concurrency}: admit at least as many "
                              "/generate requests as may run at once")
        if self.backend == "onnx" and (self.gpus or self.device == "cuda"):
            raise ConfigError("BILSTM_BACKEND=onnx runs on the CPU (onnxruntime's CPU build): drop BILSTM_GPUS / "
                              "BILSTM_DEVICE=cuda, or serve the torch backend on the GPUs")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body read: every text at the limit, each character escaped as ``\\uXXXX``."""
        return self.max_texts * (self.max_chars * 6 + 8) + 4096

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeSettings:
        """Read and check the ``BILSTM_*`` variables; raises ConfigError naming a bad one."""
        env = os.environ if env is None else env
        beam = env.get("BILSTM_TRANSLATE_BEAM_SIZE", "").strip()
        return cls(
            model_dirs=tuple(p for p in env.get("BILSTM_MODEL_DIRS", "").split(os.pathsep) if p.strip()),
            bento_models=tuple(t.strip() for t in env.get("BILSTM_BENTO_MODELS", "").split(",") if t.strip()),
            max_texts=_int(env, "BILSTM_MAX_TEXTS", cls.max_texts),
            max_chars=_int(env, "BILSTM_MAX_CHARS", cls.max_chars),
            # BentoML's batchable endpoints refuse max_batch_size 1 (in every worker, at import: a crash loop)
            max_batch_size=_int(env, "BILSTM_MAX_BATCH_SIZE", cls.max_batch_size, minimum=2),
            max_latency_ms=_int(env, "BILSTM_MAX_LATENCY_MS", cls.max_latency_ms),
            max_in_flight=_int(env, "BILSTM_MAX_IN_FLIGHT", cls.max_in_flight),
            generate_concurrency=_int(env, "BILSTM_GENERATE_CONCURRENCY", cls.generate_concurrency),
            generate_max_in_flight=_int(env, "BILSTM_GENERATE_MAX_IN_FLIGHT", cls.generate_max_in_flight),
            workers=_int(env, "BILSTM_WORKERS", cls.workers),
            threads=_int(env, "BILSTM_THREADS", cls.threads),
            gpus=_int(env, "BILSTM_GPUS", cls.gpus, minimum=0),
            device=_choice(env, "BILSTM_DEVICE", DEVICES),
            precision=_choice(env, "BILSTM_PRECISION", PRECISIONS),
            backend=_choice(env, "BILSTM_BACKEND", BACKENDS),
            translate_beam_size=(_int(env, "BILSTM_TRANSLATE_BEAM_SIZE", 1, maximum=MAX_SERVE_BEAM_SIZE)
                                 if beam else None),
            max_new_tokens=_int(env, "BILSTM_MAX_NEW_TOKENS", cls.max_new_tokens, maximum=MAX_NEW_TOKENS),
            timeout_s=_int(env, "BILSTM_TIMEOUT_S", cls.timeout_s),
            access_log=_flag(env, "BILSTM_ACCESS_LOG"),
            metrics=_flag(env, "BILSTM_METRICS"),
        )

    def service_config(self) -> dict:
        """Keyword arguments of ``@bentoml.service``: workers, resources and traffic."""
        config: dict = {"traffic": {"timeout": self.timeout_s}}
        if not self.access_log:
            config["logging"] = {"access": {"enabled": False}}
        if not self.metrics:
            config["metrics"] = {"enabled": False}
        if self.gpus:
            # One worker per GPU; each worker picks its own device from its worker index (see registry.py).
            config.update(workers=self.gpus, resources={"gpu": self.gpus})
        else:
            config.update(workers=self.workers, resources={"cpu": str(self.workers * self.threads)})
        return config
