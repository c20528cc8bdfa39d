"""Tag schemes for chunks/entities: IOB1, IOB2 (BIO) and BIOES, conversions and transition rules.

* IOB1 (CoNLL-2003): tokens inside an entity are ``I-X``; ``B-X`` only starts an entity that directly
  follows another entity of the same type.
* IOB2: every entity starts with ``B-X``, continues with ``I-X``.
* BIOES: ``S-X`` for single-token entities, ``B-X … I-X … E-X`` otherwise.

All conversions go through entity spans, so ``a → b → a`` round-trips for any valid sequence. Invalid
input (e.g. ``O I-X`` in IOB2) is read leniently as starting an entity, like conlleval does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch

SCHEMES = ("iob1", "iob2", "bioes")
Span = tuple[int, int, str]  # (start, end exclusive, type)


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` → ``("B", "PER")``; ``"O"`` → ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I", "E", "S") or not kind:
        raise ValueError(f"invalid tag {tag!r}: expected O or B-/I-/E-/S- followed by a type")
    return prefix, kind


def spans_from_tags(tags: Sequence[str], scheme: str) -> list[Span]:
    """Entity spans of a tag sequence in ``scheme``."""
    spans: list[Span] = []
    start, kind = None, ""
    for position, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        begins = False
        if prefix == "O":
            if start is not None:
                spans.append((start, position, kind))
            start = None
            continue
        if scheme == "iob1":
            begins = start is None or tag_kind != kind or prefix == "B"
        else:  # iob2 / bioes: B and S begin; I/E continue a same-type entity, else (leniently) begin
            begins = prefix in ("B", "S") or start is None or tag_kind != kind
        if begins:
            if start is not None:
                spans.append((start, position, kind))
            start, kind = position, tag_kind
        if scheme == "bioes" and prefix in ("E", "S"):
            spans.append((start, position + 1, kind))
            start = None
    if start is not None:
        spans.append((start, len(tags), kind))
    return spans


def tags_from_spans(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Tag sequence of ``length`` tokens for non-overlapping, sorted ``spans`` in ``scheme``."""
    tags = ["O"] * length
    previous_end, previous_kind = -1, ""
    for start, end, kind in spans:
        for position in range(start, end):
            tags[position] = f"I-{kind}"
        if scheme == "iob2":
            tags[start] = f"B-{kind}"
        elif scheme == "bioes":
            if end - start == 1:
                tags[start] = f"S-{kind}"
            else:
                tags[start], tags[end - 1] = f"B-{kind}", f"E-{kind}"
        elif scheme == "iob1" and previous_end == start and previous_kind == kind:
            tags[start] = f"B-{kind}"
        previous_end, previous_kind = end, kind
    return tags


def convert(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert a tag sequence between schemes."""
    if source == target:
        return list(tags)
    return tags_from_spans(spans_from_tags(tags, source), len(tags), target)


def detect_scheme(sequences: Sequence[Sequence[str]]) -> str:
    """Guess a corpus' scheme: BIOES if it uses E-/S-; IOB1 if some entity starts with I-; else IOB2."""
    prefixes = {tag[:2] for tags in sequences for tag in tags}
    if "E-" in prefixes or "S-" in prefixes:
        return "bioes"
    for tags in sequences:
        previous = "O"
        for tag in tags:
            if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
                return "iob1"
            previous = tag
    return "iob2"


def tag_set(kinds: Sequence[str], scheme: str) -> list[str]:
    """All tags of a scheme for the given entity types, ``O`` first."""
    prefixes = {"iob1": "BI", "iob2": "BI", "bioes": "BIES"}[scheme]
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds) for prefix in prefixes]


def allowed_transitions(tags: Sequence[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which transitions a valid sequence may make: ``(from→to [K, K], start [K], end [K])`` bools."""
    parts = [split_tag(tag) for tag in tags]
    size = len(tags)
    transitions = torch.zeros(size, size, dtype=torch.bool)
    start = torch.zeros(size, dtype=torch.bool)
    end = torch.zeros(size, dtype=torch.bool)
    for j, (prefix, _kind) in enumerate(parts):
        if scheme == "iob1":
            start[j] = prefix != "B"  # B only follows an entity of its type
        else:
            start[j] = prefix in ("O", "B", "S")
        end[j] = scheme != "bioes" or prefix in ("O", "E", "S")
    for i, (prefix_from, kind_from) in enumerate(parts):
        for j, (prefix_to, kind_to) in enumerate(parts):
            if scheme == "bioes":
                inside = prefix_from in ("B", "I")  # an entity is open and must continue
                ok = prefix_to in ("I", "E") and kind_to == kind_from if inside else prefix_to in ("O", "B", "S")
            elif scheme == "iob2":
                ok = prefix_to != "I" or (prefix_from in ("B", "I") and kind_from == kind_to)
            else:  # iob1: B-X only right after an X entity token; I-X anywhere
                ok = prefix_to != "B" or (prefix_from in ("B", "I") and kind_from == kind_to)
            transitions[i, j] = ok
    return transitions, start, end


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether a tag sequence obeys the scheme's transition rules."""
    index = {tag: i for i, tag in enumerate(sorted(set(tags) | {"O"}))}
    ordered = sorted(index, key=index.get)
    transitions, start, end = allowed_transitions(ordered, scheme)
    ids = [index[tag] for tag in tags]
    if not ids:
        return True
    return bool(start[ids[0]] and end[ids[-1]] and all(transitions[a, b] for a, b in pairwise(ids)))
