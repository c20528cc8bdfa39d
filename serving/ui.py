"""The web page next to the API (``GET /ui``), the model list it reads (``GET /models``), and the OpenAPI
additions for the tasks' options (``"attention": true`` on ``/translate``), which BentoML's schema of the batched
endpoint (texts only) leaves out.

The page is one file, ``serving/assets/ui.html``, with its CSS and script inline: it loads nothing from the
internet. It calls the same JSON routes the API documents, so what it shows is what a client gets. Named
entities are drawn with spaCy displaCy's own entity markup: the page is filled in with ``TPL_ENT`` and the
label colours from ``spacy.displacy`` when it is first served, so it looks exactly like ``displacy.render``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.schemas import GENERATE_PATH, UNBATCHED_SUFFIX
from toolkit.registry import TASKS

if TYPE_CHECKING:
    from serving.registry import ModelRegistry
    from serving.schemas import Route

UI_PAGE = Path(__file__).parent / "assets" / "ui.html"
UI_PATHS = ("/ui", "/ui/")
MODELS_PATH = "/models"
CONLL_COLOURS = {"PER": "PERSON", "LOC": "LOC", "ORG": "ORG", "MISC": "NORP"}
"""CoNLL types drawn in the colour displaCy gives the matching OntoNotes type (MISC has none: NORP's)."""


@functools.cache
def ui_page() -> bytes:
    """``ui.html`` with displaCy's entity template and colours filled in (built once per worker)."""
    from spacy.displacy.render import DEFAULT_LABEL_COLORS
    from spacy.displacy.templates import TPL_ENT

    colours = dict(DEFAULT_LABEL_COLORS)
    colours.update({conll: DEFAULT_LABEL_COLORS.get(ontonotes, "#ddd") for conll, ontonotes in CONLL_COLOURS.items()})
    page = UI_PAGE.read_text(encoding="utf-8")
    page = page.replace("/*DISPLACY_TPL_ENT*/null", json.dumps(TPL_ENT))
    page = page.replace("/*DISPLACY_COLOURS*/null", json.dumps(colours))
    return page.encode("utf-8")


def describe_models(registry: ModelRegistry) -> dict[str, Any]:
    """``GET /models``: each configured model's task, route, name and labels (what the page builds itself from)."""
    models = []
    for source in registry.sources:
        predictor = registry.predictors.get(source.task)
        entry = TASKS[source.task]
        item: dict[str, Any] = {"task": source.task, "route": f"/{entry.route}", "name": source.origin,
                                "loaded": predictor is not None}
        if predictor is not None:
            item["labels"] = predictor.labels
        if entry.generation is not None:
            item["routes"] = [f"/{entry.route}", GENERATE_PATH]
        models.append(item)
    return {"ready": registry.ready, "error": registry.error, "models": models}


def patch_openapi(schema: dict[str, Any], routes: dict[str, Route]) -> dict[str, Any]:
    """Add each task's options to BentoML's schema of its route (it sees the batched endpoint: texts only), drop the
    internal unbatched twins, and list the gate's own pages.

    ``/translate`` takes ``"attention": true``; its answers then carry ``attention``, ``source_tokens`` and
    ``target_tokens``.
    """
    paths = schema.setdefault("paths", {})
    for path in [path for path in paths if path.endswith(UNBATCHED_SUFFIX)]:
        del paths[path]  # internal twins of the model routes
    for path, route in routes.items():
        if not route.options:
            continue
        try:
            body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        except (KeyError, TypeError):
            continue
        request = _resolve(schema, body.get("schema", {}))
        properties = dict(request.get("properties", {}))
        options = route.request.model_json_schema()["properties"]
        properties.update({name: options[name] for name in route.options})
        body["schema"] = {**request, "title": route.request.__name__, "properties": properties}
    paths.setdefault("/ui", {"get": {
        "summary": "The web page: type a text, see every loaded model's answer", "responses": {"200": {
            "description": "an HTML page (no external assets)", "content": {"text/html": {}}}}}})
    schema["paths"].setdefault(MODELS_PATH, {"get": {
        "summary": "The loaded models: task, route, name and labels", "responses": {"200": {
            "description": "JSON", "content": {"application/json": {}}}}}})
    return schema


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reference = node.get("$ref", "")
    if reference.startswith("#/components/schemas/"):
        return dict(schema.get("components", {}).get("schemas", {}).get(reference.rsplit("/", 1)[1], {}))
    return dict(node)
