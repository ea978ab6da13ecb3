"""Request bodies: which JSON fields each endpoint takes, their types and defaults.

Types are checked here so that a message names the field; values (k's range, an empty text, an
unknown id) are left to the library, the one place that rule lives. A field the endpoint does not
know is refused (422) rather than ignored: a typo such as ``"K": 5`` must not silently give 10
results. A new library argument is one more line in a table below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..recommender import MAX_K
from .problems import ApiError

MAX_BODY_BYTES = 64 * 1024  # a query is cut at 32 KiB of UTF-8 anyway (edgerec.encoder.MAX_TEXT_BYTES)
DEFAULT_K = 10


@dataclass(frozen=True)
class Field:
    accepts: Callable[[Any], bool]
    kind: str  # what the message says it must be
    required: bool = False
    default: Any = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


TEXT = Field(lambda v: isinstance(v, str), "a string", required=True)
ITEM_ID = Field(lambda v: isinstance(v, str), "a string (an item id)", required=True)
HISTORY = Field(_is_str_list, "a list of item ids (strings)", required=True)
K = Field(_is_int, f"an integer from 1 to {MAX_K}", default=DEFAULT_K)
FLAG_ON = Field(lambda v: isinstance(v, bool), "true or false", default=True)

QUERY = {"text": TEXT, "k": K}
SIMILAR = {"item_id": ITEM_ID, "k": K}
RECOMMEND = {"history": HISTORY, "k": K, "exclude_seen": FLAG_ON}


def decode(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object: 400 when it is not JSON at all, 422 when it is JSON but not an object."""
    try:
        body = json.loads(raw)  # bytes: UTF-8 (or -16/-32) detected; invalid UTF-8 is a ValueError
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON (UTF-8); send a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", f"the body must be a JSON object, got {_json_type(body)}")
    return body


def parse(body: Mapping[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """The endpoint's arguments from a decoded body: every known field, defaults filled in."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                             f"this endpoint takes {', '.join(fields)}")
    args: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in body:
            if spec.required:
                raise ApiError(422, "missing_field", f"{name!r} is required ({spec.kind})")
            args[name] = spec.default
        elif spec.accepts(body[name]):
            args[name] = body[name]
        else:
            raise ApiError(422, "invalid_type", f"{name!r} must be {spec.kind}, got {_json_type(body[name])}")
    return args


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
