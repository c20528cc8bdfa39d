"""Request and response models of the HTTP API (pydantic), so the OpenAPI schema says what is accepted.

Every endpoint takes ``{"texts": ["...", ...]}`` and answers with a JSON array holding one result per
text, in order: the Predictor result's ``to_dict()``. The response models are derived from the Predictor's
result dataclasses (:func:`result_model`), so a result is defined once.
"""

from __future__ import annotations

import dataclasses
import typing
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


def translate_request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """``POST /translate``: the texts, and whether to return the attention weights too."""

    class TranslateRequest(request_model(max_texts, max_chars)):  # type: ignore[misc]
        """Texts to translate, in order; ``attention: true`` adds each translation's attention weights."""

        attention: bool = Field(False, description="also return the attention weights and the subwords of both "
                                                   "sides (computed without batching)")

    return TranslateRequest


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
the request gate sends a lone request there and answers 404 to anyone else."""

HTTP_HIDDEN = {"Translation": ("attention", "source_tokens", "target_tokens")}
"""Result fields the JSON routes do not carry (the Predictor fills them only when asked)."""


def model_routes(max_texts: int, max_chars: int, max_new_tokens: int) -> dict[str, tuple[str, type[BaseModel]]]:
    """Every model endpoint: path → (the task whose model answers it, the request model its body must fit)."""
    from toolkit.registry import TASKS

    texts = request_model(max_texts, max_chars)
    routes = {f"/{entry.route}": (task, texts) for task, entry in TASKS.items()}
    routes["/translate"] = ("translate", translate_request_model(max_texts, max_chars))
    routes["/generate"] = ("lm", generate_request_model(max_texts, max_chars, max_new_tokens))
    return routes


def result_model(result: type, name: str | None = None) -> type[BaseModel]:
    """The pydantic model of a Predictor result dataclass, field for field (nested dataclasses too).

    The dataclass is the one definition of a result; this only restates it for BentoML's validation and the
    OpenAPI schema. A nested dataclass ``X`` becomes ``XResult``.
    """
    hints = typing.get_type_hints(result)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        if field.name in HTTP_HIDDEN.get(result.__name__, ()):
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


class ErrorResponse(BaseModel):
    """Every 4xx/503 answer of the request gate: one line saying what is wrong, plus details."""

    error: str
    detail: list[dict] | None = None
    loaded_tasks: list[str] | None = None
