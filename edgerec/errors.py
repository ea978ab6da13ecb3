"""The one error hierarchy of edgerec.

The library raises only these (plus TypeError for arguments of the wrong
type); the CLI turns them into one-line messages and exit codes.
"""

from __future__ import annotations


class EdgerecError(Exception):
    """Base of every error edgerec raises on purpose."""

    exit_code = 1


class BundleError(EdgerecError):
    """A bundle is missing, damaged, or does not match its manifest."""

    exit_code = 3


class ManifestError(BundleError):
    """manifest.json is missing, malformed, or of an unknown schema."""


class IntegrityError(BundleError):
    """A bundle file's size or sha256 differs from what the manifest records."""


class InputError(EdgerecError, ValueError):
    """An argument has the right type but an unusable value."""

    exit_code = 2


class EmptyQueryError(InputError):
    """A query text that is empty or whitespace only."""


class UnknownItemError(InputError, KeyError):
    """An item id the bundle does not contain."""

    def __init__(self, item_id: str, candidates: tuple[str, ...] | None = None) -> None:
        super().__init__(item_id)
        self.item_id = item_id
        # Ids of items whose names are like it, best first; None when names were not searched.
        self.candidates = None if candidates is None else tuple(candidates)

    def __str__(self) -> str:
        # An id is a line of text: one pasted by mistake (a whole file) is shown cut.
        shown = repr(self.item_id) if len(self.item_id) <= 200 else repr(self.item_id[:200]) + "..."
        if self.candidates:
            return f"unknown item id {shown}; did you mean: {', '.join(map(repr, self.candidates))}?"
        if self.candidates is not None:
            return f"unknown item id {shown}, and no item has a name like it"
        return f"unknown item id {shown}"


class CatalogError(InputError):
    """A catalogue file handed to `build` cannot be used."""


class EventsError(InputError):
    """An interactions file (`edgerec prior`, the export stage) cannot be used; the message names the file
    and, where there is one, the line."""


class ProviderError(EdgerecError):
    """The requested ONNX Runtime execution provider is not available."""

    exit_code = 4


class WriteError(EdgerecError):
    """A new bundle or version could not be written (disk full, read-only, ...); nothing old was changed."""


class StoreBusyError(EdgerecError):
    """Another process is writing to the same bundle home; only one writer at a time."""

    exit_code = 5


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A native library's error message as one line (some ONNX Runtime versions span several):
    errors reach the user as one line on stderr."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
