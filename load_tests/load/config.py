"""Load-test scenarios and SLOs, read from a TOML file (``scenarios.toml`` beside this module)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fleet.errors import ConfigError

DEFAULT_FILE = Path(__file__).with_name("scenarios.toml")
FAULT_ACTIONS = ("kill_worker", "flush_redis", "stop_broker")


@dataclass(frozen=True)
class Fault:
    """Something done to the stack ``at_s`` seconds into the run."""

    at_s: float
    action: str
    restart_after_s: float | None = None  # kill_worker / stop_broker: None = stays down

    def __post_init__(self) -> None:
        if self.action not in FAULT_ACTIONS:
            raise ConfigError(f"fault action={self.action!r} is not one of {FAULT_ACTIONS}")
        if self.at_s < 0:
            raise ConfigError(f"fault at_s={self.at_s} is negative")


@dataclass(frozen=True)
class Slo:
    """What a run must hold to PASS."""

    ping_to_redis_p99_ms: float = 500.0
    lag_max_s: float = 5.0
    lag_recovery_s: float = 30.0
    no_valid_ping_lost: bool = True
    no_alert_duplicated: bool = True
    max_dead_letter_share: float = 0.05


@dataclass(frozen=True)
class Scenario:
    """One load test: the fleet, its traffic mix, faults and how long."""

    name: str
    description: str = ""
    drivers: int = 2000
    ping_interval_s: float = 5.0
    duration_s: float = 120.0
    warmup_s: float = 10.0
    workers: int = 1
    partitions: int = 12
    detour_share: float = 0.02
    failed_share: float = 0.05
    offline_share: float = 0.0
    offline_s: float = 150.0
    duplicate_rate: float = 0.02
    invalid_rate: float = 0.005
    orders_per_min: float = 20.0
    commands_per_min: float = 10.0
    drain_timeout_s: float = 120.0
    plans_timeout_s: float = 60.0
    steps_pings_per_s: tuple[float, ...] = ()
    step_s: float = 45.0
    shift_rotation_s: float = 0.0
    own_broker: bool = False
    worker_counts: tuple[int, ...] = ()
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.drivers < 1:
            raise ConfigError(f"{self.name}: drivers={self.drivers} must be >= 1")
        if self.ping_interval_s <= 0:
            raise ConfigError(f"{self.name}: ping_interval_s={self.ping_interval_s} must be > 0")
        for share in ("detour_share", "failed_share", "offline_share"):
            value = getattr(self, share)
            if not 0 <= value <= 1:
                raise ConfigError(f"{self.name}: {share}={value} outside [0, 1]")
        for rate in ("duplicate_rate", "invalid_rate"):
            value = getattr(self, rate)
            if not 0 <= value < 1:
                raise ConfigError(f"{self.name}: {rate}={value} outside [0, 1)")
        if self.workers < 1 or any(n < 1 for n in self.worker_counts):
            raise ConfigError(f"{self.name}: worker counts must be >= 1")

    @property
    def rate(self) -> float:
        """Pings per second offered in steady state (the first step for a stepped run)."""
        return self.drivers / self.ping_interval_s

    @property
    def total_s(self) -> float:
        """How long traffic is sent."""
        if self.steps_pings_per_s:
            return self.step_s * len(self.steps_pings_per_s)
        return self.duration_s

    def rate_at(self, elapsed_s: float) -> float:
        """Offered pings per second at ``elapsed_s`` into the run."""
        if not self.steps_pings_per_s:
            return self.rate
        step = min(int(elapsed_s // self.step_s), len(self.steps_pings_per_s) - 1)
        return float(self.steps_pings_per_s[step])


_SCENARIO_FIELDS = {f.name for f in fields(Scenario)}


def _scenario(name: str, values: dict[str, Any]) -> Scenario:
    unknown = set(values) - _SCENARIO_FIELDS
    if unknown:
        raise ConfigError(f"scenario {name}: unknown keys {sorted(unknown)}")
    values = dict(values)
    values["faults"] = tuple(Fault(**f) for f in values.get("faults", ()))
    for key in ("steps_pings_per_s", "worker_counts"):
        values[key] = tuple(values.get(key, ()))
    return Scenario(name=name, **values)


@dataclass(frozen=True)
class LoadConfig:
    """Every scenario of a file, and the SLOs."""

    slo: Slo
    scenarios: dict[str, dict[str, Any]]
    shorts: dict[str, dict[str, Any]]

    def names(self) -> list[str]:
        return list(self.scenarios)

    def scenario(self, name: str, short: bool = False, **overrides: Any) -> Scenario:
        """The scenario with defaults applied, then ``.short`` (with ``short``), then overrides."""
        if name not in self.scenarios:
            raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(self.names())}")
        values = dict(self.scenarios[name])
        if short:
            values.update(self.shorts.get(name, {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return _scenario(name, values)


def load_config(path: Path = DEFAULT_FILE) -> LoadConfig:
    """Read scenarios and SLOs from a TOML file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read load-test config {path}: {exc}") from exc
    slo_values = data.pop("slo", {})
    unknown = set(slo_values) - {f.name for f in fields(Slo)}
    if unknown:
        raise ConfigError(f"{path}: unknown [slo] keys {sorted(unknown)}")
    defaults = data.pop("defaults", {})
    scenarios: dict[str, dict[str, Any]] = {}
    shorts: dict[str, dict[str, Any]] = {}
    for name, values in data.items():
        values = dict(values)
        shorts[name] = values.pop("short", {})
        scenarios[name] = {**defaults, **values}
        _scenario(name, scenarios[name])  # validate every scenario up front
        _scenario(name, {**scenarios[name], **shorts[name]})
    return LoadConfig(Slo(**slo_values), scenarios, shorts)
