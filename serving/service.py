"""The BentoML service: one ``POST /<route>`` per task of the task table (``/classify``, ``/tag``, ``/translate``).

    BILSTM_MODEL_DIRS=runs/textcat/model:runs/ner/model bentoml serve serving.service:BilstmService
    bilstm serve runs/textcat/model runs/ner/model --port 3000        # the same, checked first

Which models to serve is configuration (``serving/settings.py``): model directories, or models imported
into the BentoML model store (``python -m serving.import_model DIR`` then ``BILSTM_BENTO_MODELS=tag``).
Each endpoint takes ``{"texts": [...]}`` and answers a JSON array, one ``Predictor`` result per text; the
endpoints are made from the task table (``toolkit.registry``: route and result type), so a new task gets its
route without code here.

Adaptive batching: each endpoint is ``batchable``; BentoML's dispatcher joins the texts of concurrent
requests into one ``Predictor.predict`` call of at most ``BILSTM_MAX_BATCH_SIZE`` texts. Requests are
validated by the :class:`~serving.gate.RequestGate` before they can join a batch, so a bad request gets
its own 4xx and never fails the requests batched with it.

Isolation: every endpoint is a coroutine that runs its model call on its route's own threads
(:mod:`serving.lanes`), not on the one thread BentoML shares between all synchronous endpoints of a worker, and
the gate admits at most a bounded number of requests per route (429 beyond): a slow route cannot starve another.
"""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import UnprocessableEntity
from bentoml.models import BentoModel
from bentoml.validators import ContentType
from starlette.responses import JSONResponse

from serving.gate import RequestGate
from serving.generator import GeneratorClient, generator_service
from serving.lanes import DropOverloadTracebacks, LaneLimits, RouteLanes
from serving.registry import ModelRegistry, configured_tasks, model_paths, resolve_sources
from serving.schemas import (
    GENERATE_PATH,
    UNBATCHED_SUFFIX,
    Route,
    model_routes,
    option_only_fields,
    predict_arguments,
    result_model,
)
from serving.settings import ServeSettings
from toolkit.errors import InputError
from toolkit.registry import TASKS, load_piece

logger = logging.getLogger("bentoml.bilstm")  # under "bentoml": BentoML logs it

SETTINGS = ServeSettings.from_env()
ROUTES = model_routes(SETTINGS.max_texts, SETTINGS.max_chars, SETTINGS.max_new_tokens)
"""Every model endpoint (from the task table): the task whose model answers it and the request model of its body."""
REGISTRY = ModelRegistry()  # this worker's models; shared by the service instance and the request gate
LANES = RouteLanes({  # this worker's per-route admission and threads; shared with the request gate
    path: LaneLimits(1, SETTINGS.max_in_flight) if route.batched
    else LaneLimits(SETTINGS.generate_concurrency, SETTINGS.generate_max_in_flight) for path, route in ROUTES.items()})
logging.getLogger("bentoml._internal.server.http_app").addFilter(DropOverloadTracebacks())
GENERATOR = GeneratorClient(SETTINGS.timeout_s * 1.01)  # this worker's connections to the generation worker
# A declared media type spares BentoML from rebuilding the output's JSON schema on every response to find it
# (a quarter of the event loop's time per request here).
JSON = ContentType("application/json")
BATCHING = {"batchable": True, "max_batch_size": SETTINGS.max_batch_size, "max_latency_ms": SETTINGS.max_latency_ms}


class BilstmService:
    """Serves one model per task; an endpoint whose task has no model answers 404 (from the gate)."""

    def __init__(self) -> None:
        try:
            sources = resolve_sources(model_paths(self, SETTINGS, _bento_model_attributes()))
        except Exception as error:  # a bad directory: keep serving /livez, and say why on /readyz and the log
            logger.exception("bilstm: cannot read the configured models")
            REGISTRY.configure([], SETTINGS)
            REGISTRY.error = str(error)
        else:
            REGISTRY.configure(sources, SETTINGS)
        self.registry = REGISTRY
        self.registry.start()

    def __is_ready__(self) -> bool:
        """``/readyz``: 200 only once every configured model is loaded on this worker."""
        return self.registry.ready

    def _run(self, task: str, texts: list[str], batched: bool = True,
             **options: Any) -> list[dict[str, Any]] | JSONResponse:
        """Predict a batch (the texts of one or more requests; one request's when not ``batched``).

        The gate has validated every text, so a failure here is a bug. It would fail every request in the
        batch, so the batch is retried text by text: when each text alone succeeds, every request gets its
        answer; a text that fails alone makes the batch a 422 naming the problem (and it is logged). A single
        request the model refuses as input (InputError) gets its own 422 with the model's message.
        """
        try:
            results = self.registry.predict(task, texts, batch_size=SETTINGS.max_batch_size, **options)
            # an option may add result fields the route's response model leaves out (attention): sent as they are
            return JSONResponse(results) if options else results
        except InputError as error:
            if not batched:
                return _unprocessable(error)
            logger.exception("bilstm: /%s failed on a batch of %d texts; retrying them one by one", task, len(texts))
        except Exception:
            logger.exception("bilstm: /%s failed on a batch of %d texts; retrying them one by one", task, len(texts))
        results = []
        for text in texts:
            try:
                results.extend(self.registry.predict(task, [text], batch_size=1))
            except Exception as error:
                logger.exception("bilstm: /%s cannot process the text %r", task, text[:200])
                raise UnprocessableEntity(f"a text could not be processed by the {task} model: {error}") from None
        return results


def _unprocessable(error: InputError) -> JSONResponse:
    """The 422 of a request whose values the schema accepts but the model cannot take (a prompt over the token
    limit)."""
    return JSONResponse({"error": f"invalid request: {error}"}, status_code=422)


def _endpoint(path: str, route: Route, batched: bool = True) -> Any:
    """``POST /<route>``: the texts of one or more requests (adaptive batching) → one result per text.

    ``batched=False`` makes the route's internal twin ``/<route>_unbatched``, to which the gate sends a request
    that is alone on its route (the batcher would only make it wait) or that sets one of the task's options (the
    twin takes the whole request model, options included).
    """
    entry = TASKS[route.task]
    result = load_piece(entry.result)
    options = load_piece(entry.options) if entry.options else None
    name = path.strip("/")
    model = result_model(result, f"{name.capitalize()}Result", hidden=option_only_fields(options))

    async def endpoint(self: BilstmService, texts: list[str], **values: Any) -> list[dict[str, Any]] | JSONResponse:
        given = {key: value for key, value in predict_arguments(options, values).items() if value}
        return await LANES.run(path, functools.partial(self._run, route.task, texts, batched, **given))

    endpoint.__name__ = endpoint.__qualname__ = name if batched else name + UNBATCHED_SUFFIX
    endpoint.__doc__ = f"{result.__doc__.splitlines()[0]} One result per text, in order."
    endpoint.__annotations__ = {"texts": list[str], "return": Annotated[list[model], JSON]}
    # BentoML's batchable endpoints take one input: ``texts`` alone (the gate strips options a request leaves at their
    # defaults, and sends a request that sets one to the unbatched twin, which takes the whole request model).
    request = route.texts_request if batched else route.request
    return bentoml.api(input_spec=request, **(BATCHING if batched else {}))(endpoint)


def _generation_endpoint(route: Route) -> Any:
    """``POST /generate``: continuations sampled by the generation worker (its own process; serving/generator.py)."""
    import typing

    generated = typing.get_type_hints(load_piece(TASKS[route.task].predictor).generate)["return"]
    model = result_model(typing.get_args(generated)[0], "GenerateResult")

    async def generate(self: BilstmService, prompts: list[str], **sampling: Any) -> list[dict[str, Any]] | JSONResponse:
        """Continuations sampled from the model, one per prompt, in order (never holding this worker's GIL)."""
        answer = await GENERATOR.generate(prompts=prompts, **sampling)
        if "error" in answer:
            return JSONResponse({"error": f"invalid request: {answer['error']}"}, status_code=422)
        return answer["results"]

    generate.__annotations__ = {"prompts": list[str], "return": Annotated[list[model], JSON]}
    return bentoml.api(input_spec=route.request)(generate)


for _path, _route in ROUTES.items():
    _name = _path.strip("/")
    if _route.batched:
        setattr(BilstmService, _name, _endpoint(_path, _route))
        setattr(BilstmService, _name + UNBATCHED_SUFFIX, _endpoint(_path, _route, batched=False))
    else:
        setattr(BilstmService, _name, _generation_endpoint(_route))


def _bento_model_attributes() -> list[tuple[str, str]]:
    return [(f"bento_model_{i}", tag) for i, tag in enumerate(SETTINGS.bento_models)]


# Models from the BentoML store are class attributes, so `bentoml build` packs them into the bento.
for _attribute, _tag in _bento_model_attributes():
    setattr(BilstmService, _attribute, BentoModel(_tag))
if GENERATE_PATH in ROUTES and ROUTES[GENERATE_PATH].task in configured_tasks(SETTINGS):
    # /generate runs in a process of its own (serving/generator.py)
    BilstmService.generator = bentoml.depends(generator_service(SETTINGS, ROUTES[GENERATE_PATH].task,
                                                                _bento_model_attributes()))

BilstmService = bentoml.service(  # type: ignore[misc]
    name="bilstm", description="BiLSTM models over HTTP: one route per task of the task table",
    **SETTINGS.service_config()
)(BilstmService)
BilstmService.add_asgi_middleware(RequestGate, registry=REGISTRY, routes=ROUTES, lanes=LANES,
                                  max_texts=SETTINGS.max_texts, max_chars=SETTINGS.max_chars,
                                  max_body_bytes=SETTINGS.max_body_bytes)
