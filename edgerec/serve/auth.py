"""API-key checks for /v1/*: ``Authorization: Bearer KEY``.

Only the key's sha256 is kept in memory, and digests are compared with hmac.compare_digest,
so neither a memory dump nor response timing gives the key away.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

from ..errors import InputError

_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


class ApiKey:
    def __init__(self, key: str) -> None:
        self._digest = hashlib.sha256(key.encode("utf-8")).digest()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "ApiKey":
        return cls(read_key_file(path))

    def allows(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries this key."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        offered = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(offered, self._digest)


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The key file's content, stripped: one token, no whitespace inside (it travels in a header)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4097)
    except FileNotFoundError:
        raise InputError(f"api key file {os.fspath(path)!r}: no such file") from None
    except OSError as exc:
        raise InputError(f"api key file {os.fspath(path)!r}: cannot read ({exc.strerror})") from None
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InputError(f"api key file {os.fspath(path)!r}: the key must be printable ASCII") from None
    if not key:
        raise InputError(f"api key file {os.fspath(path)!r} is empty; put one key (a long random token) in it")
    if len(raw) > 4096 or any(not c.isprintable() or c.isspace() for c in key):
        raise InputError(f"api key file {os.fspath(path)!r}: the key must be one token of printable ASCII "
                         "without spaces, at most 4 KiB")
    return key


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(host: str, key: ApiKey | None) -> None:
    """Refuse to listen beyond this machine without a key: anyone on the network could query."""
    if key is None and not is_loopback(host):
        raise InputError(f"--host {host} without --api-key-file would serve anyone who can reach this machine; "
                         "give --api-key-file FILE, or bind to 127.0.0.1")
