"""The casing class of a token: a word feature the tagger embeds (its network takes the class count as a size)."""

from __future__ import annotations

CASINGS = ("<pad>", "numeric", "mostly_numeric", "lower", "upper", "title", "contains_digit", "other")


def casing_id(token: str) -> int:
    """Casing class of a token (index into :data:`CASINGS`), as in Reimers & Gurevych (2017)."""
    digits = sum(ch.isdigit() for ch in token)
    if token.isdigit():
        return 1
    if digits / max(len(token), 1) > 0.5:
        return 2
    if token.islower():
        return 3
    if token.isupper():
        return 4
    if token[:1].isupper():
        return 5
    if digits:
        return 6
    return 7
