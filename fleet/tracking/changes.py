"""What a detector step reports: an alert condition opened or resolved, with details."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Change(msgspec.Struct, frozen=True):
    """A detector's change of state; ``basis_ms`` fixes the alert id of an opening."""

    action: Literal["open", "resolve"]
    at_ms: int
    basis_ms: int = 0
    details: dict[str, Any] = msgspec.field(default_factory=dict)
