"""The request gate: an ASGI middleware that checks a request before it can join a batch.

Adaptive batching runs the texts of several requests in one model call, so one bad request must never
reach the batcher (it would fail every request batched with it). The gate answers here, with a JSON body
``{"error": "...", "detail": [...]}``:

=====  ==========================================================================================
404    the endpoint's task has no model loaded (the message lists the loaded tasks), or no such route
405    a method the route does not take (e.g. GET /classify)
400    the body is not valid JSON (or not UTF-8)
413    the body, the number of texts or a text is over the configured limit
415    a Content-Type other than JSON
422    valid JSON of the wrong shape: not an object, ``texts`` missing or not a list of strings,
       an empty list, an empty or blank text, a text with a lone surrogate (``"\ud800"``), an unknown field
429    the route's lane is full on this worker (``serving.lanes``: ``route``, ``Retry-After``)
503    the models are still loading (``Retry-After``), failed to load, or none are configured; or the
       route's adaptive batcher shed the request to keep its latency budget (``route``, ``Retry-After``)
=====  ==========================================================================================

A request that passes is handed on unchanged (the body is replayed) to BentoML, which parses it again
with the same pydantic model; a few microseconds per request. Answers BentoML itself gives as plain text
(404 for an unknown route, 405 for a wrong method) are rewritten as the same JSON ``{"error": ...}``, so every
error of the API is JSON. ``GET /docs`` (and ``/``) answer the OpenAPI (Swagger) UI, built from the files in
BentoML's package and nothing from the internet (BentoML's own index page loads Google Tag Manager); the schema
itself is ``/docs.json`` (with the gate's own additions, :func:`serving.ui.patch_openapi`). ``GET /ui`` is the web
page and ``GET /models`` the list of loaded models it reads (``serving/ui.py``). The gate does HTTP only — size,
content type, JSON, the request model, admission and routing: a valid request goes on to BentoML's batched
endpoint, or, when no other request of that route is in flight on this worker or when it sets one of its task's
options (``"attention": true`` on ``/translate``), to the endpoint's unbatched twin ``/<route>_unbatched``
(internal: 404 from outside), since the batcher would hold a lone request for a batch that never fills and takes
the texts only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from serving.lanes import RouteLanes, log_refusal
from serving.registry import ModelRegistry
from serving.schemas import UNBATCHED_SUFFIX, Route
from serving.ui import MODELS_PATH, UI_PATHS, describe_models, patch_openapi, ui_page

Scope = dict[str, Any]
logger = logging.getLogger("bentoml.bilstm")
DOCS_PAGE = Path(__file__).parent / "assets" / "docs.html"
DOCS_PATHS = ("/", "/docs", "/docs/")
JSON_TYPES = ("application/json", "text/json")
UNUSABLE_STRING = ("the text contains an unpaired UTF-16 surrogate (such as \\ud800): it is not valid Unicode; "
                   "send valid Unicode text")


class RequestGate:
    """ASGI middleware in front of the model endpoints (one route per task of ``toolkit.registry``, and /generate)."""

    def __init__(self, app: Any, registry: ModelRegistry, routes: dict[str, Route], lanes: RouteLanes,
                 max_texts: int, max_chars: int, max_body_bytes: int) -> None:
        """``routes``: path → its :class:`~serving.schemas.Route` (the task whose model answers it, the request
        model that validates its body, whether it batches, its option fields); ``lanes``: each route's admission
        limit and threads (the requests it is answering now: a lone one skips the batcher's wait)."""
        self.app = app
        self.registry = registry
        self.routes = routes
        self.lanes = lanes
        self.max_texts = max_texts
        self.max_chars = max_chars
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope.get("method") in ("GET", "HEAD") and await self._serve_page(path, scope, receive, send):
            return
        if path.endswith(UNBATCHED_SUFFIX):  # internal routes: reached only through the gate's own rewrite
            await _send_json(send, 404, {"error": _no_route(path, self.routes)}, {})
            return
        route = self.routes.get(path)
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, _json_errors(scope, send, self.routes))
            return
        refused = self.lanes.refusal(path)
        if refused is not None:  # before the body is read: a full lane costs the worker nothing more
            log_refusal(429, path, f"{refused.in_flight} requests running or queued (limit {refused.limit})",
                        refused.retry_after_s)
            await self.lanes.hold(refused)
            await _send_json(send, 429, refused.payload(), {"retry-after": str(refused.retry_after_s)})
            return
        with self.lanes.admitted(path):
            await self._answer(path, route, scope, receive, send)

    async def _answer(self, path: str, route: Route, scope: Scope, receive: Any, send: Any) -> None:
        """Check one admitted model request and hand it on, to the batched endpoint or to its unbatched twin."""
        refusal = self._refuse_early(route.task, scope)
        body = b""
        if refusal is None:
            body, refusal = await self._read_body(receive)
        if refusal is None:
            refusal = self._check(body, route.request)
        if refusal is not None:
            status, payload, headers = refusal
            await _send_json(send, status, payload, headers)
            return
        # A request alone on its route goes to the route's unbatched twin: the adaptive batcher would hold it for
        # a batch that never fills (p99 ~100 ms at concurrency 1); with others in flight it joins their batch. A
        # request that sets one of its task's options goes there too, whole (the batched endpoint takes the texts
        # only); one that leaves them at their defaults is batched like the others, without them.
        unbatched = route.batched and (self.lanes.in_flight[path] == 1 or _sets_an_option(body, route))
        if route.options and not unbatched:
            body = _texts_of(body)

        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as starlette expects

        if unbatched:
            target = path + UNBATCHED_SUFFIX
            scope = {**scope, "path": target, "raw_path": target.encode()}
        await self.app(scope, replay, _overload_answers(send, path, self.lanes))

    async def _serve_page(self, path: str, scope: Scope, receive: Any, send: Any) -> bool:
        """The GET routes the gate answers itself; False for every other path."""
        if path in DOCS_PATHS:
            await _send_page(send, DOCS_PAGE.read_bytes())
        elif path in UI_PATHS:
            await _send_page(send, ui_page())
        elif path == MODELS_PATH:
            await _send_json(send, 200, describe_models(self.registry), {})
        elif path == "/docs.json":
            await self.app(scope, receive, _patched_schema(send, self.routes))
        else:
            return False
        return True

    def _refuse_early(self, task: str, scope: Scope) -> tuple[int, dict, dict] | None:
        """Refusals that need no body: unknown task, not ready, wrong content type, declared size."""
        registry = self.registry
        if not registry.tasks and registry.error is not None:  # misconfigured: say so rather than "no such task"
            return 503, {"error": f"the server cannot serve: {registry.error}", "loaded_tasks": []}, {}
        if task not in registry.tasks:
            loaded = registry.tasks
            return 404, {"error": f"no {task!r} model is loaded on this server; loaded tasks: "
                                  f"{', '.join(loaded) or 'none'} (POST /{loaded[0] if loaded else task})",
                         "loaded_tasks": loaded}, {}
        if not registry.ready:
            if registry.error is not None:
                return 503, {"error": f"the server cannot serve: {registry.error}"}, {}
            return 503, {"error": "the models are still loading; retry shortly"}, {"retry-after": "1"}
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1").split(";")[0].strip()
        if content_type.lower() not in JSON_TYPES:
            return 415, {"error": f"Content-Type {content_type!r} is not supported; send application/json "
                                  'like {"texts": ["..."]}'}, {}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return 413, {"error": f"request body of {int(declared)} bytes is over the limit of "
                                  f"{self.max_body_bytes} bytes"}, {}
        return None

    async def _read_body(self, receive: Any) -> tuple[bytes, tuple[int, dict, dict] | None]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", (400, {"error": "the client disconnected before sending the whole body"}, {})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", (413, {"error": f"request body is over the limit of {self.max_body_bytes} bytes"}, {})
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _check(self, body: bytes, request_model: type[BaseModel]) -> tuple[int, dict, dict] | None:
        """Parse and validate the body; None when it may go on to the batcher."""
        if not body.strip():
            return 400, {"error": 'the request body is empty; send JSON like {"texts": ["..."]}'}, {}
        try:
            request_model.model_validate_json(body)
        except ValidationError as error:
            return self._explain(error, body, request_model)
        return None

    def _valid_json_unusable_text(self, body: bytes, request_model: type[BaseModel]) -> tuple[int, dict, dict] | None:
        """A 422 for JSON that pydantic's parser refuses only for a lone surrogate escape (``"\\ud800"``).

        Such a body is valid JSON (RFC 8259 allows the escape) but its text is not Unicode; it is an invalid
        text like an empty one, not a broken body. None when the body is not valid JSON after all.
        """
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return None
        try:
            request_model.model_validate(data)
        except ValidationError as error:
            return self._explain(error, b"", request_model)
        return None

    def _explain(self, error: ValidationError, body: bytes, request_model: type[BaseModel]) -> tuple[int, dict, dict]:
        details = error.errors(include_url=False, include_input=False, include_context=False)
        for item in details:
            if item["type"] in ("json_invalid", "json_type"):
                return self._valid_json_unusable_text(body, request_model) or (
                    400, {"error": f"the request body is not valid JSON: {item['msg']}"}, {})
        for item in details:
            location = tuple(item["loc"])
            if item["type"] == "too_long" and location in (("texts",), ("prompts",)):
                return 413, {"error": f"too many {location[0]} in one request: at most {self.max_texts} "
                                      "(send the rest in further requests)", "detail": details}, {}
            if item["type"] == "string_too_long" and location[:1] in (("texts",), ("prompts",)):
                return 413, {"error": f"{location[0][:-1]} {location[1]} is longer than the limit of {self.max_chars} "
                                      "characters", "detail": details}, {}
        first = details[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        problem = UNUSABLE_STRING if first["type"] == "string_unicode" else first["msg"]
        message = f"invalid request: {where}: {problem}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more problem{'s' if len(details) > 2 else ''})"
        return 422, {"error": message, "detail": [_jsonable(item) for item in details]}, {}


def _sets_an_option(body: bytes, route: Route) -> bool:
    """Whether a validated body sets one of the route's options to something other than its default."""
    if not route.options:
        return False
    request = route.request.model_validate_json(body)
    return any(getattr(request, name) != route.request.model_fields[name].default for name in route.options)


def _texts_of(body: bytes) -> bytes:
    """A validated body with its options (all at their defaults) taken out: what the batched endpoint takes."""
    return json.dumps({"texts": json.loads(body)["texts"]}).encode()


def _jsonable(item: dict) -> dict:
    return {key: (value if isinstance(value, (str, int, float, list, tuple, type(None))) else str(value))
            for key, value in item.items()}


def _json_errors(scope: Scope, send: Any, routes: dict[str, Any]) -> Any:
    """``send``, but a plain-text 404/405 from BentoML/starlette goes out as ``{"error": ...}`` JSON."""
    held: dict[str, Any] = {}

    async def send_json_errors(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] in (404, 405):
            headers = {key.lower(): value for key, value in message.get("headers", [])}
            if not headers.get(b"content-type", b"").startswith(b"application/json"):
                held["start"], held["allow"] = message, headers.get(b"allow", b"").decode("latin-1")
                return
        if "start" not in held:
            await send(message)
            return
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            status, method, path = held["start"]["status"], scope.get("method", ""), scope.get("path", "")
            if status == 404:
                error = _no_route(path, routes)
                headers = {}
            else:
                error = f"{path} does not take {method}; use {held['allow'] or 'another method'}"
                headers = {"allow": held["allow"]} if held["allow"] else {}
            await _send_json(send, status, {"error": error}, headers)

    return send_json_errors


GENERIC_ERROR = b"An unexpected error has occurred"
"""The start of the message BentoML answers every 5xx with (its overload 503 included)."""


def _overload_answers(send: Any, path: str, lanes: RouteLanes) -> Any:
    """``send`` for a model route, with BentoML's own error answers restated in the API's JSON shape.

    * the 503 of a request BentoML's adaptive batcher shed (its queue would have missed ``max_latency_ms``) says
      which route is overloaded, with ``Retry-After``, and logs one line (BentoML's traceback is filtered out:
      :class:`serving.lanes.DropOverloadTracebacks`);
    * a 4xx BentoML wraps in a list (``[{"error": ...}]``) goes out as the object itself.
    """
    held: dict[str, Any] = {}

    async def send_restated(message: dict) -> None:
        if message["type"] == "http.response.start" and (message["status"] == 503 or 400 <= message["status"] < 500):
            held["start"], held["body"] = message, b""
            return
        if "start" not in held:
            await send(message)
            return
        held["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        status, body = held["start"]["status"], held["body"]
        if status == 503 and GENERIC_ERROR in body:
            retry = lanes.retry_after(path)
            log_refusal(503, path, "the adaptive batcher shed the request to keep its latency budget", retry)
            await _send_json(send, 503, {
                "error": f"{path} is overloaded on this worker: its batcher dropped the request to keep the queueing "
                         f"budget (BILSTM_MAX_LATENCY_MS); retry after {retry} s", "route": path,
                "retry_after_s": retry}, {"retry-after": str(retry)})
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict) and "error" in payload[0]:
            await _send_json(send, status, payload[0], {})
            return
        await send(held["start"])
        await send({"type": "http.response.body", "body": body})

    return send_restated


def _no_route(path: str, routes: dict[str, Any]) -> str:
    return (f"no route {path!r}; the API answers POST {', '.join(sorted(routes))}, GET /readyz, /livez, /models, "
            "/metrics, /docs.json, the OpenAPI UI at /docs and the web page at /ui")


def _patched_schema(send: Any, routes: dict[str, Route]) -> Any:
    """``send``, but BentoML's OpenAPI schema goes out with the gate's own routes and options added."""
    held: dict[str, Any] = {"body": b""}

    async def send_patched(message: dict) -> None:
        if message["type"] == "http.response.start":
            held["start"] = message
            return
        if message["type"] != "http.response.body" or held["start"]["status"] != 200:
            if "start" in held:
                await send(held.pop("start"))
            await send(message)
            return
        held["body"] += message.get("body", b"")
        if message.get("more_body", False):
            return
        try:
            body = json.dumps(patch_openapi(json.loads(held["body"]), routes)).encode()
        except ValueError:
            body = held["body"]
        headers = [(key, value) for key, value in held["start"].get("headers", []) if key.lower() != b"content-length"]
        await send({**held["start"], "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return send_patched


async def _send_page(send: Any, page: bytes) -> None:
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(page)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": page})


async def _send_json(send: Any, status: int, payload: dict | list, headers: dict[str, str]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(key.encode(), value.encode()) for key, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
