"""spaCy pipeline components over a model directory: ``bilstm_textcat``, ``bilstm_ner``, ``bilstm_translate``,
``bilstm_lm``.

Usage::

    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_ner", config={"model": "runs/ner_sample/model"})
    doc = nlp("Peter Blackburn visited Bonn.")      # doc.ents
    nlp.to_disk("my_pipeline")                       # copies the model directory into the pipeline
    nlp = spacy.load("my_pipeline")                  # any process; no `import toolkit` needed

The factories are made from the task table (one per task: its ``spacy_factory`` name and ``spacy_component``
class, whose ``__init__`` keywords are the factory's settings), registered with ``Language.factory`` *and*
declared as ``spacy_factories`` entry points (pyproject.toml), so spaCy finds them in a fresh process. spaCy
imports every such entry point whenever it builds a ``Language``, so this module imports nothing heavy at import
time: torch and the predictors are imported when a model is loaded.

Each component follows spaCy's own split: ``predict(docs)`` runs the :class:`~toolkit.predict.Predictor`
and changes nothing; ``set_annotations(docs, predictions)`` writes the results. ``pipe`` hands each batch
of docs to the Predictor in one call (it sorts by length and batches internally with ``batch_size``).
Components keep no per-call state: nothing grows with the number of docs processed.

Model loading: the factory validates ``meta.json`` at once (a missing ``model`` setting or a model of the
wrong task fails in ``add_pipe``) and loads the weights on first use. ``from_disk`` loads the saved copy
at once. ``spacy.load`` re-creates each component from the saved config, which names the *original*
directory (perhaps deleted since, or now holding something else), and then calls ``from_disk`` with the copy
saved beside it: while spaCy rebuilds a saved pipeline the original path is therefore not read at all, so a
saved pipeline always loads its own copy. A ``model`` path that does not exist fails on first use.

``nlp.pipe(texts, n_process=N)``: each worker process runs the model on its own thread with ``num_threads`` torch
threads (1 unless set), under fork and spawn alike; why, and what a forked worker reuses, is in
:mod:`toolkit.spacy_base`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from spacy.language import Language
from spacy.pipeline.span_ruler import prioritize_existing_ents_filter, prioritize_new_ents_filter
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example

from toolkit.data.textrules import is_blank
from toolkit.registry import TASKS, load_piece
from toolkit.spacy_base import MODEL_SUBDIR, ModelDirPipe, factory_function_name, register_factory

if TYPE_CHECKING:
    from toolkit.predict.translate import Translation

EntitySpan = tuple[int, int, str, float]
"""``(doc token start, doc token end, label, confidence)``: one predicted entity over the Doc's tokens."""


class ClassifyComponent(ModelDirPipe):
    """``bilstm_textcat``: ``doc.cats`` = label → probability (exclusive classes: they sum to 1).

    A doc with no text (empty, or whitespace and control characters only) gets no ``cats``: there is nothing
    to classify.
    """

    assigns = ("doc.cats",)
    score_weights: ClassVar[dict[str, float | None]] = {"cats_score": 1.0}

    def predict(self, docs: Iterable[Doc]) -> list[dict[str, float] | None]:
        """Class probabilities per doc (None for a blank doc)."""
        texts = [doc.text for doc in docs]
        filled = [i for i, text in enumerate(texts) if not is_blank(text)]
        predictions: list[dict[str, float] | None] = [None] * len(texts)
        if filled:
            predictor = self.predictor
            probabilities = predictor.predict_proba([texts[i] for i in filled], self.batch_size).tolist()
            for index, row in zip(filled, probabilities, strict=True):
                predictions[index] = dict(zip(predictor.labels, row, strict=True))
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: list[dict[str, float] | None]) -> None:
        """Set ``doc.cats[label]`` for this model's labels (other labels in ``doc.cats`` are kept)."""
        for doc, cats in zip(docs, predictions, strict=True):
            if cats is not None:
                doc.cats.update(cats)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy's textcat scores (``cats_score`` = macro F1 over the exclusive classes), for ``nlp.evaluate``."""
        return Scorer.score_cats(examples, "cats", labels=self.labels, multi_label=False, **kwargs)


class TagComponent(ModelDirPipe):
    """``bilstm_ner``: tags the Doc's own tokens and sets ``doc.ents``.

    The model sees exactly the Doc's tokens (whitespace tokens left out, as in training), so entity
    boundaries are always token boundaries of the Doc and never need re-alignment; ``ent.start_char`` /
    ``ent.end_char`` equal the Predictor's character offsets whenever the Doc was tokenised like the
    model's training data (``spacy.blank(lang)``).

    Existing entities (from an earlier component): with ``overwrite_ents=False`` (default) they win and a
    predicted entity that overlaps one is dropped; with ``True`` predicted entities win and overlapping
    existing ones are removed, like spaCy's EntityRuler ``overwrite_ents``. Tokens outside every entity
    end up "O" (the model tagged them as outside). With ``spans_key`` set, every predicted entity (before
    that merge) also goes to ``doc.spans[spans_key]``, its confidence in ``.attrs["scores"]`` (as spaCy's
    spancat does).
    """

    assigns = ("doc.ents", "token.ent_iob", "token.ent_type")
    score_weights: ClassVar[dict[str, float | None]] = {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0,
                                                        "ents_per_type": None}

    def __init__(self, nlp: Language, name: str, model: str | None, *, batch_size: int = 32,
                 device: str | None = None, overwrite_ents: bool = False, spans_key: str | None = None,
                 max_chars: int | None = None, truncate: bool = False, backend: str = "torch",
                 num_threads: int | None = None) -> None:
        super().__init__(nlp, name, model, batch_size=batch_size, device=device, max_chars=max_chars,
                         truncate=truncate, backend=backend, num_threads=num_threads)
        self.overwrite_ents = overwrite_ents
        self.spans_key = spans_key

    @property
    def labels(self) -> tuple[str, ...]:
        """Entity types (from the tag set: ``B-PER`` → ``PER``)."""
        tags = self.meta.labels if self.meta is not None else None
        return tuple(sorted({tag[2:] for tag in tags or () if tag != "O"}))

    def predict(self, docs: Iterable[Doc]) -> list[list[EntitySpan]]:
        """Entities per doc as ``(token start, token end, label, confidence)`` over the Doc's tokens."""
        docs = list(docs)
        positions = [[token.i for token in doc if not token.is_space] for doc in docs]
        filled = [i for i, kept in enumerate(positions) if kept]
        predictions: list[list[EntitySpan]] = [[] for _ in positions]
        if filled:
            sentences = [[token.text for token in doc if not token.is_space] for doc in docs]
            tagged = self.predictor.tag_tokens([sentences[i] for i in filled], self.batch_size)
            for index, result in zip(filled, tagged, strict=True):
                kept = positions[index]  # model token k is doc token kept[k]
                predictions[index] = [(kept[start], kept[end - 1] + 1, label, confidence)
                                      for start, end, label, confidence in result.spans]
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: list[list[EntitySpan]]) -> None:
        """Merge the predicted entities into ``doc.ents`` (see the class docstring for the policy)."""
        for doc, entities in zip(docs, predictions, strict=True):
            spans = [Span(doc, start, end, label=label) for start, end, label, _ in entities]
            if self.spans_key is not None:
                group = SpanGroup(doc, name=self.spans_key, spans=spans)
                group.attrs["scores"] = [confidence for *_, confidence in entities]
                doc.spans[self.spans_key] = group
            merge = prioritize_new_ents_filter if self.overwrite_ents else prioritize_existing_ents_filter
            doc.ents = sorted(merge(doc.ents, spans), key=lambda span: span.start)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy's entity precision/recall/F1 (``ents_p``, ``ents_r``, ``ents_f``, ``ents_per_type``)."""
        return get_ner_prf(examples, **kwargs)


class TranslateComponent(ModelDirPipe):
    """``bilstm_translate``: writes each Doc's translation to the Doc extension ``doc._.<extension>``.

    One Doc is one source text (the model was trained on sentence pairs, so give it sentences). The
    extension (default ``translation``, value None until set) is registered when the component is built;
    an existing extension of that name is reused, never replaced (``force=False``), but one defined with a
    getter or as a method cannot be written and is refused. A blank doc gets None.
    """

    assigns = ("doc._.translation",)

    def __init__(self, nlp: Language, name: str, model: str | None, *, batch_size: int = 64,
                 device: str | None = None, beam_size: int | None = None, extension: str = "translation",
                 max_chars: int | None = None, truncate: bool = False, backend: str = "torch",
                 num_threads: int | None = None) -> None:
        super().__init__(nlp, name, model, batch_size=batch_size, device=device, max_chars=max_chars,
                         truncate=truncate, backend=backend, num_threads=num_threads)
        if beam_size is not None and beam_size < 1:
            raise ValueError(f"bilstm_translate component {name!r}: beam_size must be >= 1 or None, got {beam_size}")
        self.beam_size = beam_size
        self.extension = extension
        register_doc_extension(extension, name)

    @property
    def labels(self) -> tuple[str, ...]:
        return ()

    def predict(self, docs: Iterable[Doc]) -> list[Translation | None]:
        """Translations per doc (None for a blank doc); ``beam_size`` None = the model's default."""
        texts = [doc.text for doc in docs]
        filled = [i for i, text in enumerate(texts) if not is_blank(text)]
        predictions: list[Translation | None] = [None] * len(texts)
        if filled:
            results = self.predictor.predict([texts[i] for i in filled], self.batch_size, beam_size=self.beam_size)
            for index, result in zip(filled, results, strict=True):
                predictions[index] = result
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: list[Translation | None]) -> None:
        """Set ``doc._.<extension>`` to the translated text (None for a blank doc)."""
        for doc, result in zip(docs, predictions, strict=True):
            setattr(doc._, self.extension, None if result is None else result.translation)


class LMComponent(ModelDirPipe):
    """``bilstm_lm``: each Doc's perplexity under a language model in ``doc._.<extension>`` (default ``perplexity``).

    The Doc's text is scored on its own, from ``<eos>`` as the start symbol (``LMPredictor.score``); a blank doc
    gets None. Useful to filter a corpus (``[d for d in nlp.pipe(texts) if d._.perplexity < 200]``).
    """

    assigns = ("doc._.perplexity",)

    def __init__(self, nlp: Language, name: str, model: str | None, *, batch_size: int = 32,
                 device: str | None = None, extension: str = "perplexity", max_chars: int | None = None,
                 truncate: bool = False, backend: str = "torch", num_threads: int | None = None) -> None:
        super().__init__(nlp, name, model, batch_size=batch_size, device=device, max_chars=max_chars,
                         truncate=truncate, backend=backend, num_threads=num_threads)
        self.extension = extension
        register_doc_extension(extension, name, self.factory)

    @property
    def labels(self) -> tuple[str, ...]:
        return ()

    def predict(self, docs: Iterable[Doc]) -> list[float | None]:
        """Perplexity per doc (None for a blank doc)."""
        texts = [doc.text for doc in docs]
        filled = [i for i, text in enumerate(texts) if not is_blank(text)]
        predictions: list[float | None] = [None] * len(texts)
        if filled:
            for index, result in zip(filled, self.predictor.score([texts[i] for i in filled], self.batch_size),
                                     strict=True):
                predictions[index] = result.perplexity
        return predictions

    def set_annotations(self, docs: Iterable[Doc], predictions: list[float | None]) -> None:
        """Set ``doc._.<extension>`` to the perplexity."""
        for doc, perplexity in zip(docs, predictions, strict=True):
            setattr(doc._, self.extension, perplexity)


def register_doc_extension(extension: str, component: str, factory: str = "bilstm_translate") -> None:
    """Register ``Doc._.<extension>`` (default None) unless it exists; refuse one that cannot be written."""
    if not Doc.has_extension(extension):
        Doc.set_extension(extension, default=None)
        return
    _default, method, getter, setter = Doc.get_extension(extension)
    if method is not None or (getter is not None and setter is None):
        raise ValueError(
            f"{factory} component {component!r}: Doc extension {extension!r} is already registered as a "
            f"{'method' if method is not None else 'read-only property'}; choose another name with "
            f"config={{'extension': ...}}")


# ---- factories: one per task of the task table, made from its component class ------------------------------
# `make_textcat`, `make_ner`, … (``make_`` + the factory name without ``bilstm_``) are also the `spacy_factories` entry
# points in pyproject.toml, so spaCy finds them in a fresh process; a task from another package names
# `toolkit.spacy_component:make_<name>` in its own entry points (docs/architecture.md).

for _task, _entry in TASKS.items():
    globals()[factory_function_name(_entry.spacy_factory)] = register_factory(_task, _entry.spacy_factory,
                                                                             load_piece(_entry.spacy_component))

__all__ = [  # the make_* factories are generated above, one per task
    "MODEL_SUBDIR",
    "TagComponent",
    "LMComponent",
    "ClassifyComponent",
    "TranslateComponent",
    *(factory_function_name(entry.spacy_factory) for entry in TASKS.values()),
]
