"""Plain-text hygiene for the distillation corpus: one normal form, one sentence splitter, one key.

The corpus and the evaluation tasks must agree on what "the same text" means,
or a held-out text slips into training with a changed space or capital. So
both go through `normalise` (NFKC, one space between words) and compare by
`text_key` (that, case-folded). Passages stay under ~1,000 characters because
the teachers read at most 256 word pieces (about that many characters of
English); longer documents are cut into sentences.

The sentence splitter is a rule set, not a trained model (no nltk data can be
fetched here): it cuts after . ! ? (and closing quotes or brackets) when the
next word starts a sentence, and not after common abbreviations or initials.
It is wrong now and then on odd text; a wrong cut costs one odd passage, not
a leak, because held-out texts are split by the same function.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PASSAGE = 1000  # characters: about 256 word pieces of English, the teachers' reading limit
MIN_CHARS = 8
MIN_WORDS = 2

_SPACE = re.compile(r"\s+")
# A sentence ends at . ! ? (or an ellipsis), maybe followed by closing quotes or brackets,
# then space, then something that can start a sentence.
_BOUNDARY = re.compile(r"""([.!?]["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])""")
_CLOSERS = "\"')]\u201d\u2019"
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr rev gen col lt capt sgt gov sen rep hon messrs mme mlle
jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
no nos vol vols fig figs p pp ch chap sec art ed eds est approx dept univ inc ltd co corp bros
e.g i.e etc vs cf al viz ca ft mt
u.s u.k u.n a.m p.m b.c a.d d.c
""".split())
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f']+")
_STOPWORDS = frozenset("""
the of and to in is was for that it with as on be at by this have from or an are not but you he she they his
her we i my your me him them their our its has had were been will would can could there what which who all
one so if no do did does when than then out up into about more some any just like very
""".split())


def normalise(text: str) -> str:
    """NFKC, every run of whitespace (newlines included) made one space, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def text_key(text: str) -> str:
    """The identity two texts share when they count as the same: normalised and case-folded."""
    return normalise(text).casefold()


def split_sentences(text: str) -> list[str]:
    """Sentences of one normalised text, by rule (see the module docstring)."""
    text = normalise(text)
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        head = text[start:match.end(1)]
        bare = head.rstrip(_CLOSERS)
        last = bare.rsplit(" ", 1)[-1].rstrip(".!?").lstrip("\"'(\u201c\u2018").casefold()
        # "Dr. Smith", "J. Smith", "U.S. troops": an abbreviation or an initial does not end a sentence.
        if bare.endswith(".") and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        sentences.append(head.strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def passages(text: str, max_chars: int = MAX_PASSAGE) -> list[str]:
    """A document as passages: itself if it fits in ``max_chars``, else its sentences.

    A sentence can still be longer than ``max_chars`` (lists, run-ons); the
    caller drops those rather than cut them mid-thought.
    """
    text = normalise(text)
    if not text:
        return []
    return [text] if len(text) <= max_chars else split_sentences(text)


def looks_english(text: str) -> bool:
    """Cheap test that a normalised text is English prose: mostly Latin letters and, when long, English words.

    Drops near-empty lines, numbers and tables, ASCII art, code, and other
    languages; keeps headlines and two-word definitions.
    """
    if len(text) < MIN_CHARS:
        return False
    visible = [c for c in text if not c.isspace()]
    letters = [c for c in visible if c.isalpha()]
    if len(letters) < 0.6 * len(visible):
        return False
    if sum(1 for c in letters if c.isascii()) < 0.9 * len(letters):
        return False
    words = [w.casefold() for w in _WORD.findall(text)]
    if len(words) < MIN_WORDS:
        return False
    if len(words) >= 8 and sum(w in _STOPWORDS for w in words) < 0.08 * len(words):
        return False
    return True
