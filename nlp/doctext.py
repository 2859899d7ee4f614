"""Cheap access to what a Doc carries.

``Doc.text`` rebuilds the text token by token, which costs more than all of the entity
component's matching: the pipeline's ``make_doc`` keeps the input and the components read that.
``doc._.name`` builds a helper object on every access; the components read and write the
extension values where spaCy keeps them (``doc.user_data``), so ``doc._.name`` still works.
"""

from __future__ import annotations

from typing import Any, cast

from spacy.language import Language
from spacy.tokens import Doc

__all__ = ["TEXT_KEY", "data_of", "ext_key", "pattern_doc", "text_of"]

TEXT_KEY = "city311_text"


def text_of(doc: Doc) -> str:
    text = doc.user_data.get(TEXT_KEY)
    return text if isinstance(text, str) else doc.text


def ext_key(name: str) -> tuple[str, str, None, None]:
    """The ``doc.user_data`` key under which spaCy keeps ``doc._.<name>``."""
    return ("._.", name, None, None)


def data_of(doc: Doc) -> dict[Any, Any]:
    """``doc.user_data`` (typed by spaCy as keyed by str; extension keys are tuples)."""
    return cast(dict[Any, Any], doc.user_data)


def pattern_doc(nlp: Language, text: str) -> Doc:
    """A matcher pattern as the tokenizer would split it. Plain words (letters only, no special
    case) split on spaces alone, so they skip the tokenizer: the components build a few thousand
    patterns at load, and the tokenizer's cold cache made that most of the load time."""
    words = text.split(" ")
    rules = getattr(nlp.tokenizer, "rules", None) or {}
    if all(w.isalpha() and w not in rules for w in words):
        return Doc(nlp.vocab, words=words)
    return nlp.make_doc(text)
