"""The input text of a Doc, kept by the pipeline's ``make_doc``.

``Doc.text`` rebuilds the text token by token, which costs more than all of the entity
component's matching; the components read the kept copy instead.
"""

from __future__ import annotations

from spacy.tokens import Doc

__all__ = ["TEXT_KEY", "text_of"]

TEXT_KEY = "city311_text"


def text_of(doc: Doc) -> str:
    text = doc.user_data.get(TEXT_KEY)
    return text if isinstance(text, str) else doc.text
