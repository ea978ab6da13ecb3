"""The schema of manifest.json: the contract between export/ and edgerec/.

Frozen dataclasses checked in ``__post_init__``; ``Manifest.from_json`` is the
only parser and ``Manifest.to_json`` the only serialiser. The manifest carries
what the binary files do not: hnswlib needs space and dim before it can load
an index, ONNX Runtime does not know how to pool, and nothing else records
which file is which or what its hash must be.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any, Mapping

from ..errors import ManifestError

FORMAT = "edgerec-bundle"
SCHEMA_VERSION = 1  # what a bundle without a description model is written as, so older readers still open it
# A description model needs a reader that knows it: older ones say "upgrade edgerec". Version 2
# (a genre head in its place) was never released, and no longer read.
DESCRIPTIONS_SCHEMA_VERSION = 3
# A lexical index (edgerec.lexical), or a model with no items (what `edgerec build` starts from).
LEXICAL_SCHEMA_VERSION = 4
# An item prior (edgerec.prior): an older reader would answer `recommend` without it, so it says "upgrade".
PRIOR_SCHEMA_VERSION = 5
READABLE_VERSIONS = (SCHEMA_VERSION, DESCRIPTIONS_SCHEMA_VERSION, LEXICAL_SCHEMA_VERSION, PRIOR_SCHEMA_VERSION)
MANIFEST_NAME = "manifest.json"

# Roles every bundle has; the reader refuses a manifest missing one. A model has only the first two.
REQUIRED_FILES = ("encoder", "tokenizer", "index", "items")
MODEL_FILES = ("encoder", "tokenizer")
# Canonical file names a writer uses for each role.
FILE_NAMES = {
    "encoder": "encoder.onnx",
    "tokenizer": "tokenizer.json",
    "index": "index.hnsw",
    "items": "items.jsonl",
    "notice": "NOTICE",
    "descriptions": "descriptions.onnx",
    "descriptions_tokenizer": "descriptions-tokenizer.json",  # when the description model has its own
    "lexical": "lexical.npz",
    "prior": "prior.npy",
}
POOLINGS = ("mean", "cls")
SPACES = ("ip", "cosine", "l2")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _checksum(body: Mapping[str, Any]) -> str:
    """sha256 of the manifest's content in one canonical form (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ManifestError(f"manifest.json: {message}")


def _positive_int(value: Any, name: str) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        f"{name} must be a positive integer, got {value!r}",
    )


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle: where it is (relative) and what it must hash to."""

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        _require(isinstance(self.path, str) and self.path != "", f"file path must be a non-empty string, got {self.path!r}")
        # Only plain names inside the bundle root: no directories, no escapes.
        _require(
            "/" not in self.path and "\\" not in self.path and "\x00" not in self.path
            and self.path not in (".", "..") and ":" not in self.path,
            f"file path {self.path!r} must be a plain file name inside the bundle",
        )
        _require(isinstance(self.size, int) and not isinstance(self.size, bool) and self.size >= 0,
                 f"size of {self.path!r} must be a non-negative integer, got {self.size!r}")
        _require(isinstance(self.sha256, str) and bool(_SHA256.match(self.sha256)),
                 f"sha256 of {self.path!r} must be 64 lowercase hex digits, got {self.sha256!r}")


@dataclass(frozen=True)
class EncoderSpec:
    """How to turn text into a vector with the bundled ONNX graph."""

    max_length: int
    pooling: str
    normalize: bool
    dim: int
    inputs: tuple[str, ...]
    output: str
    vocab_size: int

    def __post_init__(self) -> None:
        _positive_int(self.max_length, "encoder.max_length")
        _positive_int(self.dim, "encoder.dim")
        _positive_int(self.vocab_size, "encoder.vocab_size")
        _require(self.pooling in POOLINGS, f"encoder.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _require(isinstance(self.normalize, bool), f"encoder.normalize must be true or false, got {self.normalize!r}")
        _require(
            len(self.inputs) > 0 and all(name in MODEL_INPUTS for name in self.inputs) and "input_ids" in self.inputs,
            f"encoder.inputs must name input_ids and only {MODEL_INPUTS}, got {list(self.inputs)!r}",
        )
        _require(isinstance(self.output, str) and self.output != "", f"encoder.output must be a name, got {self.output!r}")


@dataclass(frozen=True)
class IndexSpec:
    """What hnswlib needs to load and search the index (it stores none of it itself).

    Labels are row numbers of the item table: label i is the item on line i of
    the items file.
    """

    space: str
    dim: int
    m: int
    ef_construction: int
    ef: int
    count: int
    label_map: str = "items-row"

    def __post_init__(self) -> None:
        _require(self.space in SPACES, f"index.space must be one of {SPACES}, got {self.space!r}")
        for name in ("dim", "m", "ef_construction", "ef", "count"):
            _positive_int(getattr(self, name), f"index.{name}")
        _require(self.label_map == "items-row", f"index.label_map must be 'items-row', got {self.label_map!r}")


@dataclass(frozen=True)
class ItemsSpec:
    """The item table: JSON Lines, one object per item, in label order."""

    count: int
    id_field: str
    text_fields: tuple[str, ...]
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        _positive_int(self.count, "items.count")
        _require(self.id_field in self.columns, f"items.id_field {self.id_field!r} is not among items.columns")
        _require(len(self.text_fields) > 0 and all(f in self.columns for f in self.text_fields),
                 f"items.text_fields {list(self.text_fields)!r} must be non-empty columns of the table")


@dataclass(frozen=True)
class UserSpec:
    """How `recommend` turns a history into a search vector (edgerec.user).

    ``window``: how many of the most recent history items are averaged; the
    model was trained with this window, so the runtime uses the same.
    """

    representation: str = "mean-of-recent"
    window: int = 10

    def __post_init__(self) -> None:
        _require(self.representation == "mean-of-recent",
                 f"user.representation must be 'mean-of-recent', got {self.representation!r}")
        _positive_int(self.window, "user.window")


@dataclass(frozen=True)
class DescriptionSpec:
    """The description model (edgerec.descriptions): a second ONNX encoder that reads a whole query
    into the index's space, with the bundle's tokenizer or its own (files.descriptions_tokenizer);
    and when to use it.

    ``model`` says how to run it, as ``encoder`` does for the encoder. It takes
    part in a query when the encoder's best score leads its 10th by less than
    ``max_margin`` and the top item's ``title_field`` holds less than
    ``min_title_cover`` of the query's words (``stopwords`` left out): then its
    vector, times ``weight``, is added to the encoder's and the sum is searched.
    """

    model: EncoderSpec
    max_margin: float
    min_title_cover: float
    weight: float
    title_field: str
    stopwords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(isinstance(self.model, EncoderSpec), "descriptions.model must be an object")
        for name, low, high in (("max_margin", 0.0, 2.0), ("min_title_cover", 0.0, 1.0), ("weight", 0.0, 100.0)):
            value = getattr(self, name)
            _require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                     and low <= value <= high,
                     f"descriptions.{name} must be a number in [{low}, {high}], got {value!r}")
        _require(isinstance(self.title_field, str) and self.title_field != "",
                 f"descriptions.title_field must be a column name, got {self.title_field!r}")


@dataclass(frozen=True)
class LexicalSpec:
    """BM25 over the items' words, fused with the encoder's cosine (edgerec.lexical): the query's score of
    an item is cosine + ``weight`` x damping x its BM25 / the query's best BM25, the damping being how far
    the best leads the second best, as a fraction of the best, for a short query, and fading to none for
    a long one (edgerec.lexical.damping). ``k1`` and ``b``: BM25's, as the
    postings (files.lexical) were weighed with. The setting belongs to the encoder (chosen for it); each
    bundle built with that encoder gets postings of its own items."""

    weight: float
    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        for name, low, high in (("weight", 0.0, 10.0), ("k1", 0.0, 10.0), ("b", 0.0, 1.0)):
            value = getattr(self, name)
            _require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                     and low <= value <= high, f"lexical.{name} must be a number in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class PriorSpec:
    """The item prior (edgerec.prior) `recommend` adds: cosine + ``weight`` x log(1 + count) / log(1 + the
    largest count), counts in files.prior. ``events``: how many events were counted, from ``source``;
    ``half_life_days``: the recency weighting they were counted with (None: every event counts 1)."""

    weight: float
    events: int
    source: str
    half_life_days: float | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.weight, (int, float)) and not isinstance(self.weight, bool)
                 and math.isfinite(self.weight) and 0.0 <= self.weight <= 10.0,
                 f"prior.weight must be a number in [0, 10], got {self.weight!r}")
        _require(isinstance(self.events, int) and not isinstance(self.events, bool) and self.events >= 0,
                 f"prior.events must be a count, got {self.events!r}")
        _require(isinstance(self.source, str), f"prior.source must be a string, got {self.source!r}")
        _require(self.half_life_days is None or (
            isinstance(self.half_life_days, (int, float)) and not isinstance(self.half_life_days, bool)
            and math.isfinite(self.half_life_days) and self.half_life_days > 0),
            f"prior.half_life_days must be a positive number or null, got {self.half_life_days!r}")


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to verify and open a bundle.

    A manifest without ``index`` and ``items`` is a model: an encoder and its tokenizer (and the lexical
    setting that goes with it) that bundles are built from (`edgerec build`), answering no query itself.
    """

    name: str
    files: Mapping[str, FileEntry]
    encoder: EncoderSpec
    index: IndexSpec | None
    items: ItemsSpec | None
    user: UserSpec = field(default_factory=UserSpec)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    descriptions: DescriptionSpec | None = None
    lexical: LexicalSpec | None = None
    prior: PriorSpec | None = None
    format: str = FORMAT
    schema_version: int | None = None  # None: the lowest version that holds this content

    def __post_init__(self) -> None:
        _require(self.format == FORMAT, f"format must be {FORMAT!r}, got {self.format!r}")
        if self.schema_version is not None:
            _check_version(self.schema_version)
        _require((self.index is None) == (self.items is None), "index and items come together; one is missing")
        missing = [role for role in (MODEL_FILES if self.is_model else REQUIRED_FILES) if role not in self.files]
        _require(not missing, f"files lacks {missing}")
        paths = [entry.path for entry in self.files.values()]
        _require(len(set(paths)) == len(paths), f"two roles share one file: {sorted(paths)}")
        _require(MANIFEST_NAME not in paths, f"{MANIFEST_NAME} cannot list itself")
        if self.is_model:
            extra = sorted(set(self.files) - set(MODEL_FILES) - {"notice"})
            _require(not extra, f"a model (no index, no items) holds only {MODEL_FILES} and a notice, not {extra}")
            _require(self.descriptions is None, "a model (no index, no items) has no description model")
            _require(self.prior is None, "a model (no index, no items) has no item prior")
        else:
            _require(self.encoder.dim == self.index.dim,
                     f"encoder.dim {self.encoder.dim} differs from index.dim {self.index.dim}")
            _require(self.items.count == self.index.count,
                     f"items.count {self.items.count} differs from index.count {self.index.count}")
            _require(("lexical" in self.files) == (self.lexical is not None),
                     "files.lexical and the lexical section come together; one is missing")
            _require(("prior" in self.files) == (self.prior is not None),
                     "files.prior and the prior section come together; one is missing")
        _require(("descriptions" in self.files) == (self.descriptions is not None),
                 "files.descriptions and the descriptions section come together; one is missing")
        _require("descriptions_tokenizer" not in self.files or self.descriptions is not None,
                 "files.descriptions_tokenizer without a description model")
        if self.descriptions is not None:
            model = self.descriptions.model
            _require(model.dim == self.encoder.dim,
                     f"descriptions.model.dim {model.dim} differs from encoder.dim {self.encoder.dim}")
            # Without a tokenizer of its own the model reads the encoder's token ids.
            _require("descriptions_tokenizer" in self.files or model.vocab_size == self.encoder.vocab_size,
                     f"descriptions.model.vocab_size {model.vocab_size} differs from encoder.vocab_size "
                     f"{self.encoder.vocab_size} (the two share one tokenizer)")
            _require(self.descriptions.title_field in self.items.columns,
                     f"descriptions.title_field {self.descriptions.title_field!r} is not among items.columns")
        needed = self.needed_version()
        if self.schema_version is None:
            object.__setattr__(self, "schema_version", needed)
        _require(self.schema_version == needed,
                 f"schema_version {self.schema_version} does not fit the content, which is version {needed}; "
                 "rebuild the bundle")

    @property
    def is_model(self) -> bool:
        """A model: an encoder to build bundles from, with no items of its own."""
        return self.index is None

    def needed_version(self) -> int:
        """The lowest schema version that holds this content, so older readers open what they can."""
        if self.prior is not None:
            return PRIOR_SCHEMA_VERSION
        if self.is_model or self.lexical is not None:
            return LEXICAL_SCHEMA_VERSION
        return SCHEMA_VERSION if self.descriptions is None else DESCRIPTIONS_SCHEMA_VERSION

    # -- one writer -------------------------------------------------------
    def to_json(self) -> str:
        body = {
            "format": self.format,
            "schema_version": self.schema_version,
            "name": self.name,
            "files": {role: asdict(entry) for role, entry in sorted(self.files.items())},
            "encoder": asdict(self.encoder),
            **({} if self.is_model else {"index": asdict(self.index), "items": asdict(self.items)}),
            "user": asdict(self.user),
            "provenance": dict(self.provenance),
        }
        if self.descriptions is not None:  # absent, not null: a bundle without one stays readable by version-1 readers
            body["descriptions"] = asdict(self.descriptions)
        if self.lexical is not None:
            body["lexical"] = asdict(self.lexical)
        if self.prior is not None:
            body["prior"] = asdict(self.prior)
        body["checksum"] = _checksum(body)
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    # -- one reader -------------------------------------------------------
    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:  # ValueError: also integers of >4300 digits
            raise ManifestError(f"manifest.json is not valid JSON ({exc}); rebuild the bundle") from None
        _require(isinstance(raw, dict), "top level must be an object")
        _require(raw.get("format") == FORMAT, f"format must be {FORMAT!r}, got {raw.get('format')!r}")
        keys = {"format", "schema_version", "name", "files", "encoder", "index", "items", "user", "provenance",
                "descriptions", "lexical", "prior", "checksum"}
        unknown = sorted(set(raw) - keys)
        _require(not unknown, f"unknown fields {unknown}")
        if "checksum" in raw:
            # The files' hashes protect the files; this protects the manifest itself: a
            # flipped bit that still parses (a window of 10 become 11) would change answers.
            stated = raw.pop("checksum")
            if stated != _checksum(raw):
                raise ManifestError("manifest.json: its checksum does not match its content (damaged or "
                                    "edited by hand); rebuild or re-copy the bundle")
        _check_version(raw.get("schema_version"))
        try:
            files = raw["files"]
            _require(isinstance(files, dict), "files must be an object")
            return cls(
                name=_str(raw["name"], "name"),
                files={str(role): FileEntry(**_obj(entry, f"files.{role}")) for role, entry in files.items()},
                encoder=_build(EncoderSpec, raw["encoder"], "encoder", tuples=("inputs",)),
                index=_build(IndexSpec, raw["index"], "index") if "index" in raw else None,
                items=_build(ItemsSpec, raw["items"], "items", tuples=("text_fields", "columns")) if "items" in raw else None,
                user=_build(UserSpec, raw.get("user", {}), "user"),
                provenance=_obj(raw.get("provenance", {}), "provenance"),
                descriptions=_description_spec(raw["descriptions"]) if "descriptions" in raw else None,
                lexical=_build(LexicalSpec, raw["lexical"], "lexical") if "lexical" in raw else None,
                prior=_build(PriorSpec, raw["prior"], "prior") if "prior" in raw else None,
                schema_version=raw["schema_version"],
            )
        except KeyError as exc:
            raise ManifestError(f"manifest.json: missing field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ManifestError(f"manifest.json: {exc}") from None


def _description_spec(value: Any) -> DescriptionSpec:
    body = dict(_obj(value, "descriptions"))
    if "model" in body:
        body["model"] = _build(EncoderSpec, body["model"], "descriptions.model", tuples=("inputs",))
    return _build(DescriptionSpec, body, "descriptions", tuples=("stopwords",))


def _check_version(version: Any) -> None:
    _require(type(version) is int and version in READABLE_VERSIONS,
             f"schema_version {version!r} is not supported (this edgerec reads "
             f"{' and '.join(map(str, READABLE_VERSIONS))}); upgrade edgerec or rebuild the bundle")


def _str(value: Any, name: str) -> str:
    _require(isinstance(value, str), f"{name} must be a string, got {value!r}")
    return value


def _obj(value: Any, name: str) -> dict[str, Any]:
    _require(isinstance(value, dict), f"{name} must be an object, got {type(value).__name__}")
    return value


def _build(kind: type, value: Any, name: str, tuples: tuple[str, ...] = ()) -> Any:
    body = dict(_obj(value, name))
    for key in tuples:
        if key in body:
            _require(isinstance(body[key], list) and all(isinstance(v, str) for v in body[key]),
                     f"{name}.{key} must be a list of strings, got {body[key]!r}")
            body[key] = tuple(body[key])
    known = set(kind.__dataclass_fields__)
    unknown = sorted(set(body) - known)
    _require(not unknown, f"unknown fields in {name}: {unknown}")
    missing = sorted(k for k, f in kind.__dataclass_fields__.items()
                     if k not in body and f.default is MISSING and f.default_factory is MISSING)
    _require(not missing, f"{name} lacks {missing}")
    try:
        return kind(**body)
    except ManifestError as exc:
        # A spec's own checks name it by its usual place ("encoder.dim"); one nested elsewhere
        # (descriptions.model) should be named where it is.
        section = kind.__name__.removesuffix("Spec").lower()
        usual = f"manifest.json: {section}."
        if name != section and str(exc).startswith(usual):
            raise ManifestError(f"manifest.json: {name}." + str(exc)[len(usual):]) from None
        raise
