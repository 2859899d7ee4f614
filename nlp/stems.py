"""A light, deterministic stemmer for the classifier's features (never shown to anyone)."""

from __future__ import annotations

__all__ = ["stem"]

_SUFFIXES = ("ing", "ed")
_VOWELS = frozenset("aeiouy")


def stem(word: str) -> str:
    """A light, deterministic stemmer for classifier features (not for display)."""
    w = word.lower()
    if any(c.isdigit() for c in w):
        return w if any(c.isalpha() for c in w) else "#"
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            base = w[: -len(suffix)]
            if any(c in _VOWELS for c in base):
                w = base
                if len(w) > 3 and w[-1] == w[-2] and w[-1] not in _VOWELS and w[-1] not in "sl":
                    w = w[:-1]
                break
    if len(w) >= 4 and w.endswith("e"):
        w = w[:-1]
    return w
