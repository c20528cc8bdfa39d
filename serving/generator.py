"""The generation worker: ``/generate`` runs in a process of its own, a BentoML dependency of the main service.

Sampling a continuation is a Python loop of small torch calls, one per token, for seconds. In the main worker it
would share one GIL with every other route: with per-route threads (``serving.lanes``) ``/classify`` kept about
half of its throughput beside a saturating ``/generate``, and each generation step waited for the GIL behind the
classifier's work (the generator ran at a fifth of its pace). In its own process neither waits for the other;
the operating system shares the cores. This is BentoML's own composition idiom: a second ``@bentoml.service``
that the main one declares with ``bentoml.depends``; ``bentoml serve`` starts it as a separate worker and
``/readyz`` waits for it too. The main worker keeps its own copy of the language model for ``/score`` (a batched
forward pass like the other routes), so only generation crosses the process boundary (one local call per request).

The request gate still admits and refuses ``/generate`` requests in the main worker (``BILSTM_GENERATE_MAX_IN_FLIGHT``
per worker); the generator runs ``BILSTM_GENERATE_CONCURRENCY`` of them at once (its threads).

The main worker calls the generator with :class:`GeneratorClient` (JSON over the socket ``bentoml serve`` gave the
dependency) rather than through the ``bentoml.depends`` proxy: BentoML 1.4.40's proxy replaces its HTTP session every
100 requests by closing it with requests still in flight on it, and each of those failed with "Server disconnected"
(14 of 260 generations under eight concurrent clients, measured); it also speaks pickle between the processes.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

import bentoml
import httpx

from serving.registry import ModelRegistry, model_paths, resolve_sources
from serving.settings import ServeSettings
from toolkit.errors import InputError

logger = logging.getLogger("bentoml.bilstm")
GENERATOR_NAME = "bilstm-generator"


class GeneratorClient:
    """The main worker's connection pool to the generation worker: one ``httpx.AsyncClient`` for the worker's life."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    def _connect(self) -> httpx.AsyncClient:
        from bentoml._internal.configuration.containers import BentoMLContainer
        from bentoml._internal.utils.uri import uri_to_path

        uri = BentoMLContainer.remote_runner_mapping.get()[GENERATOR_NAME]  # set by `bentoml serve` for a dependency
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            transport = httpx.AsyncHTTPTransport(uds=uri_to_path(uri))
            return httpx.AsyncClient(transport=transport, base_url="http://generator", timeout=self.timeout_s)
        base = f"http://{parsed.netloc}" if parsed.scheme == "tcp" else uri
        return httpx.AsyncClient(base_url=base, timeout=self.timeout_s)

    async def generate(self, **request: Any) -> dict[str, Any]:
        """``{"results": [...]}`` or ``{"error": ...}`` (see ``BilstmGenerator.generate``)."""
        if self._client is None:
            self._client = self._connect()
        response = await self._client.post("/generate", json=request)
        response.raise_for_status()  # the generator answers 200 for every request it can read: anything else is a bug
        return response.json()


def generator_service(settings: ServeSettings, task: str, bento_attributes: list[tuple[str, str]]) -> Any:
    """The ``bilstm-generator`` service: loads only the model of ``task`` (the one that samples text)."""

    class BilstmGenerator:
        """Samples continuations from the configured language model (one process, ``generate_concurrency`` threads)."""

        def __init__(self) -> None:
            self.registry = ModelRegistry()
            try:
                sources = [s for s in resolve_sources(model_paths(self, settings, bento_attributes))
                           if s.task == task]
            except Exception as error:  # the main worker reports the same problem on /readyz
                logger.exception("bilstm-generator: cannot read the configured models")
                self.registry.configure([], settings)
                self.registry.error = str(error)
            else:
                self.registry.configure(sources, settings)
            self.registry.start()

        def __is_ready__(self) -> bool:
            return self.registry.ready

        @bentoml.api
        def generate(self, prompts: list[str], max_tokens: int = 50, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, seed: int | None = None) -> dict[str, Any]:
            """``{"results": [...]}`` (one per prompt), or ``{"error": ...}`` for values the model refuses."""
            try:
                return {"results": self.registry.generate(prompts, max_tokens=max_tokens, temperature=temperature,
                                                          top_k=top_k, top_p=top_p, seed=seed)}
            except InputError as error:
                return {"error": str(error)}

    for attribute, tag in bento_attributes:  # the stored models, so `bentoml build` packs them for this service too
        setattr(BilstmGenerator, attribute, bentoml.models.BentoModel(tag))
    config: dict[str, Any] = {"workers": 1, "threads": settings.generate_concurrency,
                              "traffic": {"timeout": settings.timeout_s}}
    if not settings.access_log:
        config["logging"] = {"access": {"enabled": False}}
    if not settings.metrics:
        config["metrics"] = {"enabled": False}
    if settings.gpus:
        config["resources"] = {"gpu": 1}
    return bentoml.service(name=GENERATOR_NAME, description="samples continuations for /generate",
                           **config)(BilstmGenerator)
