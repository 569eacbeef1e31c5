"""Who sent a dispatch command: an HMAC-SHA256 signature of the command by its issuer's key.

The dispatcher's tool signs the command's bytes with the key of its ``issued_by`` and sends
the issuer and the signature as Kafka headers; the pipeline, holding every dispatcher's key
(``FLEET_DISPATCH_KEYS_FILE``), applies a command only when the header issuer is the
command's ``issued_by`` and the signature checks. Anyone may still write to
``fleet.commands`` with the dispatch role's credentials, but cannot act as another
dispatcher or alter a signed command.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import ConfigError, InvalidCommand

ISSUER_HEADER = "fleet-issuer"
SIGNATURE_HEADER = "fleet-signature"
UNAUTHORIZED = "unauthorized"

Headers = Mapping[str, str | bytes | None] | Iterable[tuple[str, str | bytes | None]] | None


def new_key() -> str:
    """A fresh dispatcher key (hex, 256 bits)."""
    return secrets.token_hex(32)


def signature(key: str, value: bytes) -> str:
    """The hex HMAC-SHA256 of a command's bytes under ``key``."""
    return hmac.new(bytes.fromhex(key), value, hashlib.sha256).hexdigest()


def signed_headers(issuer: str, key: str, value: bytes) -> dict[str, str | bytes | None]:
    """The Kafka headers of a command signed by ``issuer``."""
    return {ISSUER_HEADER: issuer.encode(), SIGNATURE_HEADER: signature(key, value).encode()}


def _header_dict(headers: Headers) -> dict[str, bytes]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name: value.encode() if isinstance(value, str) else bytes(value or b"")
        for name, value in items
    }


@dataclass(frozen=True)
class IssuerKeys:
    """Every dispatcher's key by ``issued_by``: the pipeline's check of a command's sender."""

    keys: Mapping[str, str]

    @classmethod
    def from_file(cls, path: Path) -> IssuerKeys:
        """A JSON object ``{"dispatcher:amira": "<hex key>", ...}``."""
        try:
            keys = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"dispatch keys file {path}: {exc}") from exc
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
        ):
            raise ConfigError(f"dispatch keys file {path}: not an object of issuer -> hex key")
        for issuer, key in keys.items():
            try:
                bytes.fromhex(key)
            except ValueError:
                raise ConfigError(
                    f"dispatch keys file {path}: key of {issuer} is not hex"
                ) from None
        return cls(keys)

    def check(self, issued_by: str | None, value: bytes, headers: Headers) -> None:
        """Raise ``InvalidCommand('unauthorized')`` unless ``issued_by`` signed ``value``."""
        found = _header_dict(headers)
        issuer = found.get(ISSUER_HEADER, b"").decode(errors="replace")
        if not issued_by or issuer != issued_by:
            raise InvalidCommand(
                UNAUTHORIZED, f"issued_by={issued_by!r} but header {ISSUER_HEADER}={issuer!r}"
            )
        key = self.keys.get(issued_by)
        if key is None:
            raise InvalidCommand(UNAUTHORIZED, f"issued_by={issued_by!r} has no dispatch key")
        given = found.get(SIGNATURE_HEADER, b"")
        if not hmac.compare_digest(given, signature(key, value).encode()):
            raise InvalidCommand(UNAUTHORIZED, f"signature of {issued_by!r} does not check")
