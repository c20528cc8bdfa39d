"""Request and response models of the HTTP API (pydantic), so the OpenAPI schema says what is accepted.

Every endpoint takes ``{"texts": ["...", ...]}`` and answers with a JSON array holding one result per
text, in order: the Predictor result's ``to_dict()``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from toolkit.data.textrules import text_problem


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


class ClassifyResult(BaseModel):
    """A text's predicted label, its probability and every class's probability."""

    label: str
    score: float
    probabilities: dict[str, float]
    input_truncated: bool = False
    """Present (true) only when the text was cut to the length limit before the model read it."""


class EntityResult(BaseModel):
    """An entity: its text, type, character span ``[start, end)`` and token span, and a confidence."""

    text: str
    label: str
    start: int
    end: int
    confidence: float
    token_start: int
    token_end: int


class TagResult(BaseModel):
    """A text's entities, its tokens and their tags (in the training data's tag scheme)."""

    entities: list[EntityResult]
    tokens: list[str]
    tags: list[str]
    input_truncated: bool = False
    """Present (true) only when the text was cut to the length limit before the model read it."""


class TranslateResult(BaseModel):
    """A source text, its translation and the hypothesis' log-probability score."""

    source: str
    translation: str
    score: float
    truncated: bool = False
    """Present (true) only when the output hit the length limit before ending."""
    input_truncated: bool = False
    """Present (true) only when the source was cut to the length limit before the model read it."""


class ErrorResponse(BaseModel):
    """Every 4xx/503 answer of the request gate: one line saying what is wrong, plus details."""

    error: str
    detail: list[dict] | None = None
    loaded_tasks: list[str] | None = None
