"""The public API: a loaded bundle that answers queries.

One ONNX Runtime session and one hnswlib index per ``Recommender``; both are
safe to share between threads for reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .bundle.reader import Bundle, open_bundle
from .descriptions import DescriptionModel
from .encoder import TextEncoder, clean_text
from .errors import EmptyQueryError, InputError
from .index import ItemIndex
from .items import ItemTable
from .lexical import LEXICAL_POOL, LexicalIndex, WordSplitter, fuse
from .prior import ItemPrior
from .user import STRATEGIES, away_from, best_scores, user_vector

if TYPE_CHECKING:  # imported when first used: loading and plain queries never pay for them
    from .filters import FilterSpec, ItemColumns
    from .names import ItemNames, NameMatch

BUNDLE_ENV = "EDGEREC_BUNDLE"
MAX_K = 10_000
# One encode() call holds all its texts and vectors at once; beyond this, split the work.
MAX_ENCODE_TEXTS = 100_000
MAX_BATCH_SIZE = 1024
# With an item prior or disliked items, candidates beyond the top k by cosine that can still rise into it.
PRIOR_SEARCH = 50


@dataclass(frozen=True)
class Recommendation:
    """One result: the item's id, its similarity score (cosine, higher is closer) and its metadata."""

    item_id: str
    score: float
    metadata: Mapping[str, Any]

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.item_id))

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready record; metadata fields named item_id or score cannot shadow the real ones."""
        body = {k: v for k, v in self.metadata.items() if k not in ("item_id", "score")}
        return {"item_id": self.item_id, "score": round(self.score, 6), **body}


def default_bundle_path() -> Path:
    """The bundle shipped in the wheel (or, in a source checkout, artifacts/default)."""
    return _shipped("_bundle", "default")


def default_model_path() -> Path:
    """The general encoder shipped in the wheel (or artifacts/general): what `edgerec build` starts from."""
    return _shipped("_model", "general")


def _shipped(in_wheel: str, in_checkout: str) -> Path:
    here = Path(__file__).resolve().parent
    shipped = here / in_wheel
    if (shipped / "manifest.json").is_file():
        return shipped
    return here.parent / "artifacts" / in_checkout


def resolve_bundle_path(path: str | os.PathLike[str] | None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get(BUNDLE_ENV)
    return Path(env) if env else default_bundle_path()


# ONNX Runtime threads unless asked otherwise. A query is a few dozen tokens:
# too little work to split, and on the machine measured a second thread made a
# single query slower (results/peers.md). Large encode() batches gain from more.
DEFAULT_THREADS = 1


class Recommender:
    """Recommendations from one bundle. Build it with ``Recommender.load``."""

    # (threads, device, ef) it was loaded with: reload() loads the new version the same way.
    _load_options: tuple[int | None, str, int | None] = (DEFAULT_THREADS, "cpu", None)

    def __init__(self, bundle: Bundle, encoder: TextEncoder, index: ItemIndex, items: ItemTable,
                 descriptions: DescriptionModel | None = None, lexical: LexicalIndex | None = None,
                 prior: ItemPrior | None = None) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.index = index
        self.items = items
        self.descriptions = descriptions  # for descriptive queries, when the bundle has one (edgerec.descriptions)
        self.lexical = lexical  # BM25 fused into text queries, when the bundle has it (edgerec.lexical)
        self.prior = prior  # popularity added in recommend, when the bundle has it (edgerec.prior)
        # The most popular items join every recommend with a prior: their vectors are kept at hand.
        self._popular = {} if prior is None else {int(label): row for row, label in enumerate(prior.ranked)}
        self._popular_vectors = None if prior is None else index.vectors(prior.ranked)
        self._names: ItemNames | None = None
        self._columns: ItemColumns | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = DEFAULT_THREADS,
        device: str = "cpu",
        ef: int | None = None,
    ) -> "Recommender":
        """Verify and open a bundle (None: $EDGEREC_BUNDLE, else the default bundle).

        A bundle home (edgerec.bundle.home) opens the version its ``current`` pointer names.
        ``threads``: ONNX Runtime threads; 1 by default, the fastest for single
        queries; None uses every core, which pays for large ``encode`` batches.
        ``ef``: HNSW search breadth instead of the bundle's default (more recall, more time).
        """
        return cls._open(open_bundle(resolve_bundle_path(path)), threads=threads, device=device, ef=ef)

    @classmethod
    def _open(cls, bundle: Bundle, *, threads: int | None, device: str, ef: int | None = None,
              encoder: TextEncoder | None = None) -> "Recommender":
        manifest = bundle.manifest
        items = ItemTable.load(bundle.path("items"), manifest.items)
        index = ItemIndex.load(bundle.path("index"), manifest.index)
        if ef is not None:
            index.set_ef(ef)
        if encoder is None:
            encoder = TextEncoder(
                bundle.path("encoder"), bundle.path("tokenizer"), manifest.encoder, threads=threads, device=device
            )
        descriptions = DescriptionModel.of_bundle(bundle, threads=threads, device=device, encoder=encoder)
        lexical = None
        if manifest.lexical is not None:
            lexical = LexicalIndex.from_bytes(bundle.path("lexical").read_bytes(), WordSplitter(encoder.tokenizer),
                                              size=len(items), name=str(bundle.path("lexical")))
        prior = None
        if manifest.prior is not None:
            prior = ItemPrior.from_bytes(bundle.path("prior").read_bytes(), size=len(items), name=str(bundle.path("prior")))
        recommender = cls(bundle, encoder, index, items, descriptions, lexical, prior)
        recommender._load_options = (threads, device, ef)
        return recommender

    def reload(self) -> "Recommender":
        """A Recommender for the version that is current now; ``self`` when nothing changed.

        For a bundle home this follows the ``current`` pointer to the newest
        version; for a plain bundle directory it re-reads the directory. This
        Recommender is never changed: it keeps answering from the version it
        loaded, so threads using it see no mix. Swap the reference when ready
        (``rec = rec.reload()``). The ONNX session is reused when the encoder
        and tokenizer files are the same.
        """
        bundle = open_bundle(self.bundle.home or self.bundle.root)
        if bundle.root == self.bundle.root and bundle.manifest == self.bundle.manifest:
            return self
        old, new = self.bundle.manifest, bundle.manifest
        same_encoder = old.encoder == new.encoder and all(
            old.files[role].sha256 == new.files[role].sha256 for role in ("encoder", "tokenizer")
        )
        threads, device, ef = self._load_options
        return self._open(bundle, threads=threads, device=device, ef=ef,
                          encoder=self.encoder if same_encoder else None)

    def __len__(self) -> int:
        return len(self.items)

    # Made on first use, like their tables. Two threads racing here may each make one: both are correct.
    @property
    def names(self) -> ItemNames:
        """Items by name (edgerec.names)."""
        if self._names is None:
            from .names import ItemNames

            self._names = ItemNames(self.items)
        return self._names

    @property
    def columns(self) -> ItemColumns:
        """The items' metadata as filters read it (edgerec.filters)."""
        if self._columns is None:
            from .filters import ItemColumns

            self._columns = ItemColumns(self.items)
        return self._columns

    # -- vectors -----------------------------------------------------------
    def encode(self, texts: str | Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (a single str gives one row)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray)):
            raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
        if len(texts) > MAX_ENCODE_TEXTS:
            raise InputError(f"{len(texts)} texts in one encode() call; the limit is {MAX_ENCODE_TEXTS}, "
                             "so split them into several calls")
        cleaned = [clean_text(t, name=f"texts[{i}]") for i, t in enumerate(texts)]
        if not cleaned:
            return np.empty((0, self.encoder.spec.dim), dtype=np.float32)
        return self.encoder.encode(cleaned, batch_size=batch_size)

    # -- recommendations -----------------------------------------------------
    def query(self, text: str, k: int = 10, *, descriptions: bool = True,
              filter: FilterSpec | None = None) -> list[Recommendation]:
        """Items that match a free-text description, best first.

        ``filter``: only items whose metadata pass it (edgerec.filters), e.g. ``"year<=1998"``,
        ``["year<=1998", "genres=Comedy|Drama"]`` or ``{"year": {"<=": 1998}}``; k of them when k pass.
        The filter applies to the encoder's candidates and to BM25's alike.

        When the bundle has BM25 postings (edgerec.lexical), each candidate's score is its cosine plus
        the BM25 share: cosine + weight x damping x BM25 / the query's best BM25 (damping: how much of the
        query's word weight its best BM25 item holds, for short queries). When the bundle has a
        description model and the encoder's answer is weak (flat scores, a top title unrelated to the
        query), the model takes part first (edgerec.descriptions): its reading of the whole sentence is
        added to the encoder's vector; ``descriptions=False`` keeps it out, ``query_reading`` tells
        whether it takes part.
        """
        k = self._check_k(k)
        if not isinstance(descriptions, bool):
            raise TypeError(f"descriptions must be a bool, got {type(descriptions).__name__}")
        allowed = self._allowed(filter)
        labels, scores, _ = self._answer(clean_text(text), k, use_descriptions=descriptions, allowed=allowed)
        return self._results(labels, scores)

    def query_understood(self, text: str) -> bool:
        """Whether the model knows any word of ``text`` (edgerec.understood). When it does not (emoji only,
        a script the vocabulary lacks), ``query`` still returns k items, the same for every such text:
        they answer nothing, so do not present them as an answer."""
        from .understood import understood

        return understood(self.encoder.tokenizer, clean_text(text))

    def query_reading(self, text: str) -> str:
        """How ``query`` reads ``text``: "encoder" (the encoder alone) or "blend" (the description
        model takes part)."""
        return self._answer(clean_text(text), 1, use_descriptions=True)[2]

    def _answer(self, text: str, k: int, *, use_descriptions: bool,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """The query path: encode, search, (when the description model joins) search again, and (when the
        bundle has BM25 postings) fuse the lexical scores in. ``allowed``: a filter's mask, for both sides."""
        model = self.descriptions if use_descriptions else None
        vector = self.encoder.encode_one(text)
        search = self.index.search if allowed is None else self._search_allowed(allowed)
        labels, scores = search(vector, k if model is None else model.probe_size(k, len(self.items)))
        refined = None if model is None else model.refine(text, vector, scores, self._top_record(labels))
        reading = "encoder"
        if refined is not None:
            vector, reading = refined, "blend"
            labels, scores = search(vector, k)
        spec = self.bundle.manifest.lexical
        if self.lexical is None or spec is None:  # both or neither: the manifest says when postings exist
            return labels[:k], scores[:k], reading
        words = self.lexical.split(text)
        found, bm25, coverage = self.lexical.matches(words, max(k, LEXICAL_POOL), allowed)
        fused = fuse(labels[:k], scores[:k], found, bm25, lambda rows: self.index.vectors(rows) @ vector,
                     spec.weight, k, words=len(words), coverage=coverage)
        return *fused, reading

    def _top_record(self, labels: np.ndarray) -> Mapping[str, Any]:
        return self.items.records[int(labels[0])] if len(labels) else {}

    def find(self, text: str, k: int = 10) -> list[NameMatch]:
        """Items whose title or id is like ``text``, best first (edgerec.names: case, accents, articles and
        a year in parentheses do not matter; exact names first, then prefixes, all words, typos)."""
        return self.names.find(clean_text(text), self._check_k(k))

    def similar(self, item_id: str, k: int = 10, *, filter: FilterSpec | None = None) -> list[Recommendation]:
        """Items like ``item_id`` (the item itself is left out). An exact id comes first; otherwise a title
        that names exactly one item (``find``'s exact, prefix or all-words match) is accepted. ``filter``: as
        in ``query``."""
        k = self._check_k(k)
        label = self._label(item_id)
        allowed = self._allowed(filter)
        vector = self.index.vectors([label])[0]
        search = self.index.search if allowed is None else self._search_allowed(allowed)
        return self._results(*search(vector, k, exclude=[label]))

    def recommend(self, history: Sequence[str], k: int = 10, *, exclude_seen: bool = True,
                  disliked: Sequence[str] = (), strategy: str = "exclude",
                  prior: float | None = None, filter: FilterSpec | None = None) -> list[Recommendation]:
        """Items for a user who liked ``history`` (item ids, most recent last).

        The most recent items (the bundle's ``user.window``) make the search
        vector; every history item is left out of the results unless
        ``exclude_seen`` is False. An item named more than once counts once, at
        its most recent position. A title naming one item is accepted, as in
        ``similar``. An unknown item raises UnknownItemError (with candidates):
        the whole history is refused rather than answered without it.

        ``disliked``: items the user turned down; they are never answered, and with ``strategy``
        "average" or "best_score" the answer also moves away from them (edgerec.user).
        ``prior``: the weight of the bundle's item prior (edgerec.prior) for this call instead of the
        bundle's own; 0 leaves popularity out. A bundle without a prior accepts only None or 0.
        ``filter``: as in ``query``.
        """
        k = self._check_k(k)
        if isinstance(history, (str, bytes, bytearray)) or not isinstance(history, Sequence):
            raise TypeError("history must be a sequence of item ids, e.g. ['Alien (1979)']")
        if isinstance(disliked, (str, bytes, bytearray)) or not isinstance(disliked, Sequence):
            raise TypeError("disliked must be a sequence of item ids, e.g. ['Alien (1979)']")
        if not isinstance(exclude_seen, bool):
            raise TypeError(f"exclude_seen must be a bool, got {type(exclude_seen).__name__}")
        if strategy not in STRATEGIES:
            raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        weight = self._prior_weight(prior)
        if len(history) == 0:
            raise EmptyQueryError("history is empty: give at least one item id")
        labels = [self._label(item_id, name=f"history[{i}]") for i, item_id in enumerate(history)]
        # Keep each item's last occurrence: a re-watched item is recent, not twice as weighty.
        labels = list(reversed(dict.fromkeys(reversed(labels))))
        turned_down = list(dict.fromkeys(self._label(item_id, name=f"disliked[{i}]")
                                         for i, item_id in enumerate(disliked)))
        allowed = self._allowed(filter)
        search = self.index.search if allowed is None else self._search_allowed(allowed)
        vector = self.user_vector(labels)
        exclude = [*(labels if exclude_seen else ()), *turned_down]
        score_of = None  # the candidates' scores when they are not the cosine to ``vector``
        if turned_down and strategy == "average":
            vector = away_from(vector, self.index.vectors(turned_down))
        elif turned_down and strategy == "best_score":
            liked = self.index.vectors(labels[-self.bundle.manifest.user.window:])
            against = self.index.vectors(turned_down)
            score_of = lambda rows: best_scores(self._vectors(rows), liked, against)  # noqa: E731
        if weight == 0.0 and score_of is None:
            return self._results(*search(vector, k, exclude=exclude))
        wanted = min(k + PRIOR_SEARCH, len(self.items))
        found, cosines = search(vector, wanted, exclude=exclude)
        ceiling = float(cosines[-1]) if score_of is None and len(found) == wanted else None
        if score_of is None:
            score_of = lambda rows: self._vectors(rows) @ vector  # noqa: E731
        else:  # an item's best score is its cosine to one liked item: each one's neighbours are candidates
            near = [search(v, wanted, exclude=exclude)[0] for v in liked]
            found = np.unique(np.concatenate([found, *near]))
            cosines = score_of(found)
        if weight == 0.0 or self.prior is None:
            order = np.lexsort((found, -cosines))[:k]
            return self._results(found[order], cosines[order])
        if allowed is not None:  # popular items the filter does not keep never join
            exclude += [label for label in self.prior.ranked.tolist() if not allowed[label]]
        return self._results(*self.prior.rerank(found, cosines, score_of, weight, k, exclude=exclude,
                                                ceiling=ceiling))

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """Item vectors, from the popular items' kept copy when all are among them."""
        rows = [self._popular.get(label) for label in labels.tolist()]
        if self._popular_vectors is not None and None not in rows:
            return self._popular_vectors[rows]
        return self.index.vectors(labels)

    def _prior_weight(self, prior: object) -> float:
        """The item prior's weight for one call: ``prior`` when given, else the bundle's (0 without one)."""
        if prior is None:
            return self.bundle.manifest.prior.weight if self.bundle.manifest.prior is not None else 0.0
        if isinstance(prior, bool) or not isinstance(prior, (int, float, np.floating, np.integer)):
            raise TypeError(f"prior must be a number, got {type(prior).__name__}")
        if not (np.isfinite(prior) and 0.0 <= prior <= 10.0):
            raise InputError(f"prior must be between 0 and 10, got {prior}")
        if prior > 0 and self.prior is None:
            raise InputError("this bundle has no item prior; give it one with `edgerec prior EVENTS --bundle HOME`")
        return float(prior)

    def user_vector(self, labels: Sequence[int]) -> np.ndarray:
        """The representation the bundle's model was trained for (edgerec.user, window from the manifest)."""
        window = self.bundle.manifest.user.window
        # Only the window's vectors are read: a long history costs no more memory than a short one.
        return user_vector(self.index.vectors(list(labels)[-window:]), window)

    # -- helpers -------------------------------------------------------------
    def _check_k(self, k: object) -> int:
        """1 <= k <= MAX_K, else an error; a k above the item count is clamped to it."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__}")
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        return min(int(k), len(self.items))

    def _label(self, item_id: object, name: str = "item_id") -> int:
        if not isinstance(item_id, str):
            raise TypeError(f"{name} must be a str item id, got {type(item_id).__name__}")
        label = self.items.labels.get(item_id)  # an exact id: no name table needed
        return label if label is not None else self.names.label(item_id)

    def _allowed(self, filter: FilterSpec | None) -> np.ndarray | None:
        """The filter's mask over the items (None: no filter, and no work on the plain path)."""
        return None if filter is None else self.columns.mask(filter)

    def _search_allowed(self, allowed: np.ndarray) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
        from .filtered_search import search_allowed

        return lambda vector, k, exclude=(): search_allowed(self.index, vector, k, allowed, exclude)

    def _results(self, labels: np.ndarray, scores: np.ndarray) -> list[Recommendation]:
        records = self.items.records
        id_field = self.items.id_field
        out = []
        for label, score in zip(labels.tolist(), scores.tolist()):
            record = records[label]
            metadata = {k: v for k, v in record.items() if k != id_field}
            out.append(Recommendation(item_id=record[id_field], score=float(score), metadata=metadata))
        return out
