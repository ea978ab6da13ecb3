"""edgerec: recommendations from a compressed language model, on the device.

    >>> from edgerec import Recommender
    >>> rec = Recommender.load()            # the bundle shipped with the package
    >>> rec.query("a heist movie with a clever twist", k=5)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BundleError,
    CatalogError,
    EdgerecError,
    EmptyQueryError,
    InputError,
    IntegrityError,
    ManifestError,
    ProviderError,
    UnknownItemError,
)
from .recommender import Recommendation, Recommender  # noqa: E402

__all__ = [
    "BundleError",
    "CatalogError",
    "EdgerecError",
    "EmptyQueryError",
    "InputError",
    "IntegrityError",
    "ManifestError",
    "ProviderError",
    "Recommendation",
    "Recommender",
    "UnknownItemError",
    "__version__",
]
