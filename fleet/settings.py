"""The one frozen settings object, read from ``FLEET_*`` environment variables (and ``.env``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fleet.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# (smaller, larger): the first must stay below the second, or an alert flaps / a loop spins.
ORDERED_PAIRS = (
    ("behind_schedule_resolve_s", "behind_schedule_s"),
    ("off_route_resolve_m", "off_route_m"),
    ("stale_check_interval_s", "stale_after_s"),
)
# (smaller, larger) that may be equal.
BOUNDED_PAIRS = (("history_retry_initial_s", "history_retry_max_s"),)
PORT_FIELDS = ("worker_web_port", "metrics_port", "history_query_port")


class Settings(BaseSettings):
    """Every knob of the pipeline. Each field is ``FLEET_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="FLEET_", env_file=".env", frozen=True, extra="ignore"
    )

    # --- services -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the read model")
    clickhouse_url: SecretStr | None = Field(
        None, description="ClickHouse server URL; unset = embedded engine (chDB) under var/"
    )
    var_dir: Path = Field(PROJECT_ROOT / "var", description="Data, logs, PID files, jar cache")
    topic_prefix: str = Field(
        "", description="Prefix for every topic name (isolates tests; empty in production)"
    )
    app_id: str = Field("fleet-pipeline", description="Faust app id = Kafka consumer group")
    partitions: int = Field(
        12, ge=1, description="Partitions of every topic (driver-keyed topics are co-partitioned)"
    )
    # --- servers --------------------------------------------------------------------------
    listen_host: str = Field(
        "127.0.0.1",
        description="Address the pipeline's servers listen on (metrics, history endpoint); "
        "0.0.0.0 exposes them",
    )
    # --- worker ---------------------------------------------------------------------------
    worker_web_port: int = Field(6066, description="Faust web port of the worker")
    metrics_port: int = Field(9464, ge=0, description="Prometheus metrics port (0 = off)")
    batch_size: int = Field(2000, ge=1, description="Max pings per ingest batch")
    batch_within_s: float = Field(0.05, gt=0, description="Max wait to fill a batch, seconds")
    # --- ingest ---------------------------------------------------------------------------
    max_future_ms: int = Field(300_000, ge=0, description="Reject pings further in the future")
    max_message_bytes: int = Field(65_536, ge=1, description="Reject larger messages")
    max_speed_mps: float = Field(70.0, gt=0, description="Speed between fixes that is a jump")
    jump_confirm_fixes: int = Field(
        3, ge=1, description="Consecutive consistent fixes that confirm a jump"
    )
    position_ttl_s: int = Field(
        86_400, ge=1, description="Expiry of a driver's live hash after the last ping"
    )
    zone_resolution: int = Field(7, ge=0, le=15, description="H3 resolution of supply zones")
    zone_ttl_s: int = Field(600, ge=1, description="A driver leaves zone counts after this")
    state_flush_s: float = Field(
        15.0, ge=0, description="Driver states are saved to the changelog at most this often"
    )
    sweep_interval_s: float = Field(
        30.0, gt=0, description="Period of the sweep that expires markers and zone members"
    )
    # --- ping consumer (docs/ping-batches.md) --------------------------------------------
    ping_consumer: Literal["batch", "agent"] = Field(
        "batch",
        description="How a worker reads fleet.pings: batch (a confluent-kafka consumer in "
        "batches, partitions from Faust's assignment) or agent (a Faust agent, per event)",
    )
    # --- tracking -------------------------------------------------------------------------
    off_route_m: float = Field(150.0, gt=0, description="Cross-track distance that opens")
    off_route_resolve_m: float = Field(100.0, gt=0, description="Distance that resolves")
    off_route_min_s: float = Field(15.0, ge=0, description="Time beyond the threshold to open")
    off_route_min_fixes: int = Field(3, ge=1, description="Fixes beyond the threshold to open")
    off_route_resolve_s: float = Field(20.0, ge=0, description="Time inside to resolve")
    behind_schedule_s: float = Field(600.0, gt=0, description="Lag that opens behind_schedule")
    behind_schedule_resolve_s: float = Field(
        300.0, ge=0, description="Lag under which behind_schedule resolves"
    )
    stale_after_s: float = Field(120.0, gt=0, description="Silence on shift that opens stale")
    stale_check_interval_s: float = Field(5.0, gt=0, description="Stale timer period")
    # --- hardening (docs/tracking.md "Crashes and Redis losses") ---------------------------
    read_model_check_s: float = Field(
        5.0, gt=0, description="How often a worker checks Redis still has its read model "
        "(its sentinel key); when lost, every owned driver, alert and completion is rewritten",
    )  # fmt: skip
    idle_forget_s: float = Field(
        21_600.0, gt=0, description="A driver silent this long, without open alerts, off "
        "shift or with its route finished, leaves the tracking and ingest state (tombstones); "
        "its finished route's plan too",
    )  # fmt: skip
    # --- history (ClickHouse) -------------------------------------------------------------
    history_ttl_days_pings: int = Field(180, ge=1, description="Days pings are kept")
    history_ttl_days_events: int = Field(730, ge=1, description="Days delivery events are kept")
    history_ttl_days_alerts: int = Field(365, ge=1, description="Days alert changes are kept")
    history_ttl_days_etas: int = Field(90, ge=1, description="Days ETA predictions are kept")
    history_ttl_days_route_plans: int = Field(730, ge=1, description="Days route plans are kept")
    history_ttl_days_dead_letters: int = Field(30, ge=1, description="Days dead letters are kept")
    history_batch_size: int = Field(20_000, ge=1, description="Max rows per history insert")
    history_batch_within_s: float = Field(1.0, gt=0, description="Max wait to fill an insert")
    history_retry_initial_s: float = Field(0.2, gt=0, description="First retry delay of a write")
    history_retry_max_s: float = Field(30.0, gt=0, description="Longest retry delay of a write")
    history_dedup_window: int = Field(
        1000, ge=0, description="Recent insert tokens a table remembers (repeated insert = no-op)"
    )
    history_query_port: int = Field(
        0, ge=0, description="Port of the worker's read-only history endpoint (0 = any free)"
    )
    # --- history reads (docs/history.md "Reads"): limits, token, read-only account -------
    history_query_timeout_s: float = Field(
        60.0, gt=0, description="Longest a history read may run (max_execution_time)"
    )
    history_query_max_memory_bytes: int = Field(
        2_000_000_000, ge=1, description="Memory one history read may use (max_memory_usage)"
    )
    history_query_max_result_rows: int = Field(
        10_000_000, ge=1, description="Rows a history read may return (then it fails)"
    )
    history_query_max_result_bytes: int = Field(
        1_000_000_000, ge=1, description="Bytes a history read may return (then it fails)"
    )
    history_token: SecretStr | None = Field(
        None,
        description="Token of the worker's history endpoint; unset = generated in "
        "<var>/history/query.token (0600), shared by the CLI and the worker",
    )
    clickhouse_reader_url: SecretStr | None = Field(
        None,
        description="ClickHouse URL of a read-only account for history readers "
        "(unset = FLEET_CLICKHOUSE_URL with readonly=2 per read)",
    )
    # --- ETAs (streams/eta, models/; docs/eta.md) ------------------------------------------
    eta_update_interval_s: float = Field(
        1.0, gt=0, description="Moved drivers' ETAs are recomputed together at most this often"
    )
    eta_registry_poll_s: float = Field(
        2.0, gt=0, description="How often workers look for a newly promoted ETA model"
    )
    eta_online_halflife_s: float = Field(
        600.0, gt=0, description="Half-life (event time) of the online ETA correction's evidence"
    )
    # --- driver gateway (docs/gateway.md) -------------------------------------------------
    gateway_url: str = Field(
        "http://127.0.0.1:5055",
        description="URL of the driver gateway; it listens on this port at FLEET_LISTEN_HOST",
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker (Mosquitto) URL")
    mqtt_client_id: str = Field(
        "fleet-gateway", description="The gateway's MQTT client id (persistent session)"
    )
    gateway_devices_file: Path | None = Field(
        None, description="JSON object device id -> driver id (also read: Redis hash fleet:devices)"
    )
    gateway_registered_only: bool = Field(
        False, description="Refuse unregistered devices (off = development: device id = driver id)"
    )
    gateway_rate_per_s: float = Field(
        20.0, gt=0, description="Messages per second a device may send on average (then 429)"
    )
    gateway_rate_burst: int = Field(
        1000, ge=1, description="Messages a device may send at once (an offline queue)"
    )
    gateway_max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest HTTP request body (then 413)"
    )
    gateway_kafka_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for Kafka's acknowledgement (then 503)"
    )
    # --- dashboards (Grafana; `fleet dashboards push`) ------------------------------------
    grafana_url: str = Field(
        "http://127.0.0.1:3000", description="Grafana that `fleet dashboards push` uploads to"
    )
    grafana_token: SecretStr | None = Field(
        None, description="Grafana service-account token (Editor) for `fleet dashboards push`"
    )
    grafana_prometheus_url: str = Field(
        "http://prometheus:9090", description="Prometheus as Grafana reaches it (data source)"
    )
    grafana_clickhouse_url: str = Field(
        "http://clickhouse:8123", description="ClickHouse HTTP as Grafana reaches it (data source)"
    )
    grafana_clickhouse_user: str = Field(
        "fleet_reader", description="ClickHouse account of that data source (read-only)"
    )
    grafana_clickhouse_password: SecretStr | None = Field(
        None, description="Its password (or FLEET_GRAFANA_CLICKHOUSE_PASSWORD_FILE=<path>)"
    )
    grafana_redis_url: str = Field(
        "redis://redis:6379", description="Redis as Grafana reaches it (data source)"
    )
    # --- decisions (streams/decision: assignment, re-plans, proposals; docs/decision.md) ---
    decision_apply: Literal["auto", "propose"] = Field(
        "auto", description="Re-plans applied at once (auto) or proposed to dispatchers (propose)"
    )
    decision_time_limit_s: float = Field(
        1.0, gt=0, le=60, description="Solver budget of one decision, seconds"
    )
    decision_settle_s: float = Field(
        0.1,
        ge=0,
        le=60,
        description="A search ends when its best plan has stood this long, or as long as it"
        " took to find it (0: always the whole budget)",
    )
    decision_seed: int = Field(0, ge=0, description="Solver seed (order of stops in the model)")
    decision_margin_s: float = Field(
        60.0, ge=0, description="Least gain (objective seconds) for a triggered re-plan"
    )
    decision_margin_ratio: float = Field(
        0.02, ge=0, description="...or this share of the objective, whichever is larger"
    )
    decision_debounce_s: float = Field(
        2.0, ge=0, description="Triggers of one route within this time are solved once"
    )
    decision_cooldown_s: float = Field(
        120.0, ge=0, description="After a re-plan, automatic triggers of the route wait this long"
    )
    decision_on_failed_delivery: bool = Field(
        True, description="Re-insert a failed stop later or move it to a nearby route"
    )
    decision_retry_after_s: float = Field(
        900.0, ge=0, description="A failed stop is tried again no sooner than this"
    )
    decision_on_behind_schedule: bool = Field(
        True, description="Re-sequence a late route or move stops to drivers with slack"
    )
    decision_on_eta_window_risk: bool = Field(
        True, description="Same for a predicted window miss (eta_window_risk alerts)"
    )
    decision_on_off_route: bool = Field(True, description="Re-plan from where the driver is")
    decision_on_stale: bool = Field(True, description="Reassign a silent driver's urgent stops")
    decision_stale_reassign_s: float = Field(
        300.0, ge=0, description="Stale for this long (seconds) before stops are reassigned"
    )
    decision_critical_within_s: float = Field(
        3600.0, gt=0, description="A stop whose window ends within this is time-critical"
    )
    decision_neighbours: int = Field(
        3, ge=0, description="Nearby routes a re-plan or a zone optimize may move stops to"
    )
    decision_order_candidates: int = Field(
        5, ge=1, description="Routes scored for each new order (nearest drivers)"
    )
    decision_order_batch_size: int = Field(5, ge=1, description="Orders solved together at most")
    decision_order_batch_s: float = Field(
        0.1, gt=0, description="Max wait to gather a burst of orders, seconds"
    )
    history_ttl_days_decisions: int = Field(
        730, ge=1, description="Days decisions (applied and proposed, with rationale) are kept"
    )
    decision_speed_mps: float = Field(
        8.0, gt=0, description="Base driving speed of the travel-time estimate, m/s"
    )

    # --- security (docs/security.md); any field also reads FLEET_<NAME>_FILE -------------
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT (local development) or SASL_SSL (secure profile)"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_SSL"
    )
    kafka_username: str | None = Field(None, description="SASL user (a role's principal)")
    kafka_password: SecretStr | None = Field(
        None, description="SASL password (or FLEET_KAFKA_PASSWORD_FILE=<path>)"
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM of the CA that signed the broker certificate (unset = system CAs)"
    )
    redis_username: str | None = Field(None, description="Redis ACL user (unset = default)")
    redis_password: SecretStr | None = Field(
        None, description="Redis password (or FLEET_REDIS_PASSWORD_FILE=<path>)"
    )
    redis_ssl_cafile: Path | None = Field(
        None, description="PEM of the CA of Redis's TLS certificate (with a rediss:// URL)"
    )
    secure_kafka_port: int = Field(
        9094, ge=1, description="SASL_SSL port of `fleet infra up --secure` (controller: +1)"
    )
    secure_redis_port: int = Field(6380, ge=1, description="TLS port of the secure profile's Redis")
    secure_mqtt_port: int = Field(
        8883, ge=1, description="TLS port of the secure profile's Mosquitto (device logins)"
    )
    dispatch_keys_file: Path | None = Field(
        None,
        description="JSON issued_by -> HMAC key: set, the pipeline applies only commands signed "
        "by their issuer (else dead letter `unauthorized`)",
    )
    dispatch_key: SecretStr | None = Field(
        None, description="This dispatcher's key: `fleet dispatch` signs its commands with it"
    )
    gateway_device_tokens: bool = Field(
        False,
        description="The gateway requires each device's token (`fleet devices`) on HTTP: "
        "Basic or Bearer device:token",
    )
    mqtt_ssl_cafile: Path | None = Field(
        None, description="PEM of the CA of Mosquitto's TLS certificate (with an mqtts:// URL)"
    )
    mqtt_auth_dir: Path | None = Field(
        None,
        description="Mosquitto password and ACL files kept in step by `fleet devices` "
        "(the gateway's MQTT user comes from FLEET_MQTT_URL); unset = no device passwords",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then ``FLEET_<NAME>_FILE`` files, then ``.env``."""
        return (
            init_settings,
            env_settings,
            FileEnvSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """SASL needs a user and a password; the CA file must exist when named."""
        if self.kafka_security_protocol == "SASL_SSL" and not (
            self.kafka_username and self.kafka_password
        ):
            raise ValueError(
                "FLEET_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs FLEET_KAFKA_USERNAME and "
                "FLEET_KAFKA_PASSWORD (or FLEET_KAFKA_PASSWORD_FILE)"
            )
        for name in ("kafka_ssl_cafile", "redis_ssl_cafile", "mqtt_ssl_cafile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"FLEET_{name.upper()}={path} is not a file")
        return self

    @model_validator(mode="after")
    def _check_across_fields(self) -> Settings:
        """Settings that only make sense together, each error naming both variables."""
        for low, high in ORDERED_PAIRS:
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(_pair_error(self, low, high, "must be less than"))
        for low, high in BOUNDED_PAIRS:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(_pair_error(self, low, high, "must not exceed"))
        seen: dict[int, str] = {}
        for name in PORT_FIELDS:
            port = getattr(self, name)
            if port and port in seen:
                raise ValueError(_pair_error(self, seen[port], name, "must differ from"))
            seen.setdefault(port, name)
        return self


class FileEnvSource(PydanticBaseSettingsSource):
    """``FLEET_<NAME>_FILE=<path>``: the field's value is the file's content (secrets mounted
    as files, e.g. Docker or Kubernetes secrets); one trailing newline is dropped."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        prefix = str(self.settings_cls.model_config.get("env_prefix", ""))
        variable = f"{prefix}{field_name}_FILE".upper()
        path = os.environ.get(variable)
        if not path:
            return None, field_name, False
        if os.environ.get(variable.removesuffix("_FILE")):
            raise ConfigError(f"set {variable.removesuffix('_FILE')} or {variable}, not both")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{variable}={path}: cannot read ({exc.strerror})") from exc
        return text.removesuffix("\n").removesuffix("\r"), field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name, info in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(info, name)
            if value is not None:
                found[name] = value
        return found


def _pair_error(settings: Settings, first: str, second: str, relation: str) -> str:
    a, b = getattr(settings, first), getattr(settings, second)
    return f"FLEET_{first.upper()}={a} {relation} FLEET_{second.upper()}={b}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def settings_table() -> str:
    """The README's configuration table, generated from the Settings fields."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, Path):
            default = "<checkout>/var" if default == PROJECT_ROOT / "var" else str(default)
        shown = "(unset)" if default is None else f"`{default}`" if default != "" else "(empty)"
        lines.append(f"| `FLEET_{name.upper()}` | {shown} | {info.description or ''} |")
    return "\n".join(lines)
