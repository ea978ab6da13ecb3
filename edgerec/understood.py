"""Whether the model can read anything in a text: emoji and unknown scripts cannot be read.

The rule: a text is understood when its tokenizer spells at least one token
that is in the vocabulary (not the unknown token) and holds a letter or a
digit. "😂", "🚀👽", runes or Tamil (absent from the vocabulary: every piece is
[UNK]) and bare punctuation ("???") are not; "😂 movie" and "日本語" (in the
vocabulary) are. It says the model knows some piece of the text, not that the
text means anything: "zzzq" spells as known pieces and counts as understood.
The vocabulary is the model's, not the catalogue's BM25 words: "hackers in a
virtual future" shares no word with a catalogue of four books, and the encoder
still reads it well.

A text nothing of which is understood is encoded as the unknown token alone,
so every such query gets the same arbitrary list: callers (the CLI) say so
rather than present that list as an answer. Checking costs one tokenization
(tens of microseconds) and is not part of ``Recommender.query``.
"""

from __future__ import annotations

from typing import Any


def understood(tokenizer: Any, text: str) -> bool:
    """``tokenizer``: a loaded ``tokenizers.Tokenizer`` (the encoder's); ``text``: a cleaned query."""
    unknown = getattr(tokenizer.model, "unk_token", None)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return any(token != unknown and any(c.isalnum() for c in token) for token in encoding.tokens)
