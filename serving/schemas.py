"""Request and response models of the HTTP API (pydantic), so the OpenAPI schema says what is accepted.

Every endpoint takes ``{"texts": ["...", ...]}`` (plus the fields of its task's options, from the task table) and
answers with a JSON array holding one result per text, in order: the Predictor result's ``to_dict()``. The models
are derived from the task table (:func:`model_routes`) and the Predictor's dataclasses (:func:`result_model`,
:func:`option_fields`), so a result or an option is defined once.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model

from toolkit.data.textrules import text_problem
from toolkit.limits import MAX_TEMPERATURE, SEED_RANGE


def _usable_text(text: str) -> str:
    """The Predictor's own rule (``toolkit.data.textrules``), so the gate refuses exactly what it would."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return text


def request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """The request body model with the configured limits (texts per request, characters per text)."""
    text = Annotated[str, StringConstraints(min_length=1, max_length=max_chars), AfterValidator(_usable_text)]

    class TextsRequest(BaseModel):
        """Texts to process, in order."""

        model_config = ConfigDict(extra="forbid", strict=True)

        texts: list[text] = Field(
            min_length=1, max_length=max_texts,
            description=f"1 to {max_texts} non-blank texts of at most {max_chars} characters each",
            examples=[["A moving, beautifully shot film.", "Two hours I will never get back."]],
        )

    return TextsRequest


def generate_request_model(max_prompts: int, max_chars: int, max_new_tokens: int) -> type[BaseModel]:
    """The body of ``POST /generate``: prompts and sampling settings, with the configured limits."""
    prompt = Annotated[str, StringConstraints(max_length=max_chars), AfterValidator(_usable_prompt)]

    class GenerateRequest(BaseModel):
        """Prompts to continue with a language model ("" starts a text from scratch), and how to sample."""

        model_config = ConfigDict(extra="forbid", strict=True)

        prompts: list[prompt] = Field(min_length=1, max_length=max_prompts,
                                      description=f"1 to {max_prompts} prompts of at most {max_chars} characters")
        max_tokens: int = Field(50, ge=1, le=max_new_tokens, description="most tokens to generate per prompt")
        temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False,
                                   description="0 = always the most likely token; any temperature above 0, however "
                                               "small, is served (one that underflows samples the most likely token)")
        top_k: int = Field(0, ge=0, description="sample from the k most likely tokens (0 = all)")
        top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False,
                             description="nucleus sampling: the smallest set with this mass (the most likely token "
                                         "is always kept)")
        seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1],
                                 description="unsigned 64-bit; the same seed and prompts give the same continuations")

    return GenerateRequest


def _usable_prompt(prompt: str) -> str:
    """A prompt may be empty (start from scratch) but must be valid Unicode."""
    problem = text_problem(prompt) if prompt.strip() else None
    if problem is not None and "surrogate" in problem:
        raise ValueError(f"prompt {problem}")
    return prompt


UNBATCHED_SUFFIX = "_unbatched"
"""``/classify_unbatched`` etc.: each model route's twin without adaptive batching (serving/service.py); internal:
the request gate sends a lone request there (and one that sets an option) and answers 404 to anyone else."""

GENERATE_PATH = "/generate"


@dataclass(frozen=True)
class Route:
    """One model endpoint: the task whose model answers it and the request model its body must fit."""

    task: str
    request: type[BaseModel]
    batched: bool = True
    """It has an adaptive-batching endpoint and an unbatched twin (``/generate`` has neither: one call per request)."""
    options: tuple[str, ...] = ()
    """The request's fields beyond ``texts`` (the task's ``options``): a request that sets one goes unbatched."""
    texts_request: type[BaseModel] | None = None
    """``request`` without the options: what the batched endpoint takes."""


def option_fields(options: type | None) -> dict[str, tuple[Any, Any]]:
    """Pydantic fields for a task's options dataclass (``TaskEntry.options``), with their descriptions."""
    if options is None:
        return {}
    hints = typing.get_type_hints(options)
    return {item.name: (hints[item.name], Field(item.default, description=item.metadata.get("description")))
            for item in dataclasses.fields(options)}


def predict_arguments(options: type | None, values: dict[str, Any]) -> dict[str, Any]:
    """The Predictor's keyword arguments for a request's option values (a field may name its ``argument``)."""
    if options is None:
        return {}
    return {item.metadata.get("argument", item.name): values[item.name] for item in dataclasses.fields(options)
            if item.name in values}


def option_only_fields(options: type | None) -> tuple[str, ...]:
    """Result fields that only an option fills (``attention`` …): the batched routes' schema leaves them out."""
    if options is None:
        return ()
    return tuple(name for item in dataclasses.fields(options) for name in item.metadata.get("adds", ()))


def model_routes(max_texts: int, max_chars: int, max_new_tokens: int) -> dict[str, Route]:
    """Every model endpoint, from the task table: ``POST /<route>`` per task (its options in the body) and
    ``POST /generate`` for the first task whose entry samples text."""
    from toolkit.registry import TASKS, load_piece

    texts = request_model(max_texts, max_chars)
    routes: dict[str, Route] = {}
    for task, entry in TASKS.items():
        options = load_piece(entry.options) if entry.options else None
        fields = option_fields(options)
        request = texts if not fields else create_model(
            f"{entry.route.capitalize()}Request", __base__=texts, __doc__=f"{texts.__doc__} {options.__doc__}",
            **fields)
        routes[f"/{entry.route}"] = Route(task, request, options=tuple(fields), texts_request=texts)
        if entry.generation and GENERATE_PATH not in routes:
            routes[GENERATE_PATH] = Route(task, generate_request_model(max_texts, max_chars, max_new_tokens),
                                          batched=False)
    return routes


def result_model(result: type, name: str | None = None, hidden: tuple[str, ...] = ()) -> type[BaseModel]:
    """The pydantic model of a Predictor result dataclass, field for field (nested dataclasses too), without the
    ``hidden`` fields (those only an option fills: :func:`option_only_fields`).

    The dataclass is the one definition of a result; this only restates it for BentoML's validation and the
    OpenAPI schema. A nested dataclass ``X`` becomes ``XResult``.
    """
    hints = typing.get_type_hints(result)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        if field.name in hidden:
            continue
        default: Any = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=field.default_factory)
        elif default is dataclasses.MISSING:
            default = ...
        fields[field.name] = (_pydantic_type(hints[field.name]), default)
    return create_model(name or f"{result.__name__}Result", __doc__=result.__doc__, **fields)


def _pydantic_type(annotation: Any) -> Any:
    if dataclasses.is_dataclass(annotation):
        return result_model(annotation)
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, dict) and arguments:
        return origin[tuple(_pydantic_type(argument) for argument in arguments)]
    return annotation
