"""The secure profile on a real broker and Redis: authentication, least-privilege ACLs, TLS.

One SASL_SSL broker (StandardAuthorizer, SCRAM users, ACLs per role) and one TLS Redis with
ACL users start for the module, on free ports under a temporary directory, beside the
plain development services; both stop at the end.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from dashboards.dispatch_cli import build_command, send
from fleet.clients import confluent_config, redis_client
from fleet.clock import now_ms
from fleet.devices import DeviceStore
from fleet.devices_cli import sync_mosquitto
from fleet.records import DeadLetter, Ping, RoutePlan, RouteUpdate, Stop, encode
from fleet.secure_profile import (
    DEFAULT_DISPATCHER,
    SecureProfile,
    free_port_pair,
    running,
    sync_redis_users,
    sync_scram_users,
)
from fleet.security import ADMIN, DISPATCH_GROUP, KAFKA_ROLES, REDIS_USERS
from fleet.settings import Settings
from fleet.topics import ALERTS, COMMANDS, DLQ, ETAS, EVENTS, ORDERS, PINGS, ROUTE_UPDATES, ROUTES
from load_tests.gateway_process import GatewayProcess
from load_tests.harness import WorkerProcess, free_port
from tests.conftest import service_unavailable, wait_until

SECURE_PARTITIONS = 4


@dataclass(frozen=True)
class Secure:
    """The running secure profile and the settings of each role."""

    base: Settings
    profile: SecureProfile

    def role(self, role: str) -> Settings:
        return self.profile.settings(self.base, role)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    base = Settings(partitions=SECURE_PARTITIONS)
    ports = (free_port_pair(), free_port_pair(), free_port_pair())
    profile = SecureProfile(tmp_path_factory.mktemp("secure"), *ports)
    with ExitStack() as services:
        try:
            services.enter_context(running(base, profile))
        except Exception as exc:
            service_unavailable(f"secure profile unavailable: {exc}")
        yield Secure(base, profile)


def _produce(settings: Settings, topic: str) -> KafkaError | None:
    """Publish one message as the settings' principal; the delivery error, if any."""
    producer = Producer(confluent_config(settings, {"log_level": 0, "message.timeout.ms": 30_000}))
    outcome: list[KafkaError | None] = []
    producer.produce(topic, key=b"k", value=b"{}", on_delivery=lambda e, _m: outcome.append(e))
    producer.flush(60)
    assert outcome, f"no delivery report for {topic}"
    return outcome[0]


def test_a_client_without_credentials_gets_no_metadata(secure: Secure) -> None:
    plain = AdminClient({"bootstrap.servers": secure.role(ADMIN).kafka_bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=3)


def test_a_wrong_password_fails_sasl_authentication(secure: Secure) -> None:
    forged = secure.role("gateway").model_copy(update={"kafka_password": SecretStr("guess")})
    assert KafkaError._AUTHENTICATION in _auth_errors(forged)


def test_the_admin_sees_the_contract_topics_over_tls(secure: Secure) -> None:
    topics = AdminClient(confluent_config(secure.role(ADMIN), {"log_level": 0})).list_topics(
        timeout=10
    )
    assert {PINGS, COMMANDS, ROUTES} <= set(topics.topics)


ALLOWED = [
    ("gateway", PINGS),
    ("gateway", EVENTS),
    ("dispatch", COMMANDS),
    ("dispatch", ORDERS),
    ("planner", ROUTES),
    ("pipeline", ALERTS),
    ("pipeline", ROUTE_UPDATES),
]
DENIED = [
    ("gateway", COMMANDS),
    ("gateway", ROUTES),
    ("dispatch", PINGS),
    ("planner", COMMANDS),
    ("pipeline", PINGS),
    ("pipeline", COMMANDS),
    ("reader", PINGS),
    ("reader", ETAS),
]


@pytest.mark.parametrize(("role", "topic"), ALLOWED)
def test_a_role_writes_its_own_topics(secure: Secure, role: str, topic: str) -> None:
    error = _produce(secure.role(role), topic)
    assert error is None, error


@pytest.mark.parametrize(("role", "topic"), DENIED)
def test_a_role_cannot_write_other_topics(secure: Secure, role: str, topic: str) -> None:
    error = _produce(secure.role(role), topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def _first_poll_error(settings: Settings, topic: str, group: str) -> KafkaError | None:
    consumer = Consumer(
        confluent_config(
            settings, {"group.id": group, "auto.offset.reset": "earliest", "log_level": 0}
        )
    )
    consumer.subscribe([topic])
    try:
        for _ in range(20):
            msg = consumer.poll(0.5)
            if msg is not None:
                return msg.error()
        return None
    finally:
        consumer.close()


def test_dispatch_reads_alerts_but_not_pings(secure: Secure) -> None:
    dispatch = secure.role("dispatch")
    assert _produce(secure.role("pipeline"), ALERTS) is None
    group = f"{DISPATCH_GROUP}-{uuid.uuid4().hex[:8]}"
    assert _first_poll_error(dispatch, ALERTS, group) is None
    denied = _first_poll_error(dispatch, PINGS, group)
    assert denied is not None and denied.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# --- Redis --------------------------------------------------------------------------------


def test_redis_refuses_a_client_without_credentials(secure: Secure) -> None:
    dashboard = secure.role("reader")
    anonymous = dashboard.model_copy(update={"redis_username": None, "redis_password": None})
    with pytest.raises(redis.AuthenticationError):
        redis_client(anonymous).get("fleet:pos")


def test_redis_refuses_a_client_without_tls(secure: Secure) -> None:
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=secure.profile.redis_port, socket_timeout=3).ping()


def test_the_dashboard_user_reads_but_cannot_write(secure: Secure) -> None:
    worker = redis_client(secure.role("pipeline"))
    worker.hset("fleet:driver:sec-1", mapping={"lat": "52.5"})
    dashboard = redis_client(secure.role("reader"), decode_responses=True)
    assert dashboard.hgetall("fleet:driver:sec-1") == {"lat": "52.5"}
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.hset("fleet:driver:sec-1", "lat", "0")
    with pytest.raises(redis.exceptions.NoPermissionError):
        dashboard.delete("fleet:driver:sec-1")


def test_the_worker_user_touches_only_fleet_keys(secure: Secure) -> None:
    worker = redis_client(secure.role("pipeline"))
    assert worker.set("fleet:sec:probe", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.set("other:probe", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker.config_get("requirepass")


def test_secrets_are_files_only_their_owner_reads(secure: Secure) -> None:
    profile = secure.profile
    private = [
        profile.password_file("kafka", ADMIN),
        profile.env_file("pipeline"),
        profile.server_pem,
        profile.root / "kafka" / "server.properties",
        profile.root / "redis" / "redis.conf",
        profile.redis_acl_file,
        profile.dispatch_keys_file,
    ]
    assert {p.name: oct(Path(p).stat().st_mode & 0o077) for p in private} == {
        p.name: "0o0" for p in private
    }
    passwords = [profile.password(system, user) for system, users in
                 (("kafka", KAFKA_ROLES), ("redis", REDIS_USERS)) for user in users]  # fmt: skip
    # Redis keeps hashes only; no service log shows a password.
    logs = [profile.redis_acl_file, *profile.root.glob("*/*.log")]
    assert len(logs) >= 4  # the ACL file, kafka.log, server.log, redis.log
    assert not [(p.name, pw) for p in logs for pw in passwords if pw in p.read_text()]


def _auth_errors(settings: Settings) -> set[int]:
    """Error codes a new admin client reports while it tries to fetch metadata."""
    errors: list[KafkaError] = []
    admin = AdminClient(confluent_config(settings, {"log_level": 0, "error_cb": errors.append}))
    try:
        admin.list_topics(timeout=3)
    except KafkaException:
        admin.poll(1)
    return {e.code() for e in errors}


def test_a_rotated_kafka_password_replaces_the_old_one(secure: Secure) -> None:
    before = secure.role("planner")
    secure.profile.password_file("kafka", "planner").write_text(f"rotated-{uuid.uuid4().hex}\n")
    sync_scram_users(secure.role(ADMIN), secure.profile)
    assert _produce(secure.role("planner"), ROUTES) is None
    assert KafkaError._AUTHENTICATION in _auth_errors(before)


def test_a_rotated_redis_password_replaces_the_old_one(secure: Secure) -> None:
    before = secure.role("reader")
    secure.profile.password_file("redis", "dashboard").write_text(f"rotated-{uuid.uuid4().hex}\n")
    sync_redis_users(secure.role(ADMIN), secure.profile)
    assert redis_client(secure.role("reader")).exists("fleet:pos") in (0, 1)
    with pytest.raises(redis.AuthenticationError):
        redis_client(before).exists("fleet:pos")


# --- the pipeline end to end ----------------------------------------------------------------


def test_the_pipeline_runs_in_the_secure_profile(
    secure: Secure, worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A worker with only the pipeline's credentials (SASL_SSL, TLS Redis as `worker`): pings
    the gateway published reach the live read model a dashboard reads; a planner's plan is
    tracked; a signed dispatch command becomes a route update the gateway may read, while a
    forged and an unsigned one are dead-lettered as unauthorized."""
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **secure.profile.env("pipeline"),
        "FLEET_PARTITIONS": str(SECURE_PARTITIONS),
        "FLEET_APP_ID": f"fleet-pipeline-{run}",
        "FLEET_VAR_DIR": str(tmp_path / "var"),
        "FLEET_METRICS_PORT": str(free_port()),
        "FLEET_WORKER_WEB_PORT": str(free_port()),
    }
    env.pop("FLEET_TOPIC_PREFIX", None)
    pipeline = worker(env)
    drivers = [f"sec-{run}-{i}" for i in range(3)]
    t0 = now_ms() - 30_000
    pings = [
        Ping(driver_id=d, ts_ms=t0 + k * 1000, lat=52.5 + i * 0.01, lon=13.4 + k * 1e-4, seq=k + 1)
        for i, d in enumerate(drivers)
        for k in range(3)
    ]
    gateway = Producer(confluent_config(secure.role("gateway"), {"log_level": 0}))
    for p in pings:
        gateway.produce(PINGS, encode(p), p.driver_id.encode())
    assert gateway.flush(60) == 0
    dashboard = redis_client(secure.role("reader"), decode_responses=True)
    done = wait_until(
        lambda: all(dashboard.hget(f"fleet:driver:{d}", "seq") == "3" for d in drivers), 120
    )
    assert done, pipeline.tail()

    # A planner's plan reaches the pipeline's tracking.
    route = f"rt-{run}"
    plan = RoutePlan(
        route_id=route, driver_id=drivers[0], version=1,
        stops=[Stop("st-1", 52.51, 13.41), Stop("st-2", 52.52, 13.42)],
        shift_start_ms=t0, shift_end_ms=t0 + 8 * 3_600_000,
    )  # fmt: skip
    planner = Producer(confluent_config(secure.role("planner"), {"log_level": 0}))
    planner.produce(ROUTES, encode(plan), route.encode())
    assert planner.flush(60) == 0
    tracked = wait_until(
        lambda: dashboard.hget(f"fleet:driver:{drivers[0]}", "route_id") == route, 120
    )
    assert tracked, pipeline.tail()

    # Dispatch identity: only a command signed by its issued_by is applied.
    key = secure.profile.dispatch_key_file(DEFAULT_DISPATCHER).read_text().strip()
    signer = secure.role("dispatch").model_copy(update={"dispatch_key": SecretStr(key)})
    signed = build_command(route, "remove_stop", DEFAULT_DISPATCHER, stop_id="st-2")
    forged = build_command(route, "remove_stop", "dispatcher:boss", stop_id="st-1")
    unsigned = build_command(route, "remove_stop", DEFAULT_DISPATCHER, stop_id="st-1")
    for settings, command in (
        (signer, signed),
        (signer, forged),
        (secure.role("dispatch"), unsigned),
    ):
        send(settings, command)
    ids = {"forged": forged.command_id, "unsigned": unsigned.command_id}
    reasons: dict[str, str] = {}

    def dead_lettered(value: bytes) -> bool:
        letter = msgspec.json.decode(value, type=DeadLetter)
        reasons.update({n: letter.reason for n, i in ids.items() if i in (letter.raw or "")})
        return len(reasons) == len(ids)

    _scan(secure.role("reader"), DLQ, "fleet-reader", dead_lettered)
    assert reasons == {"forged": "unauthorized", "unsigned": "unauthorized"}, reasons
    # The signed one became a new plan version, which the gateway principal may read.
    updates: list[RouteUpdate] = []

    def applied(value: bytes) -> bool:
        update = msgspec.json.decode(value, type=RouteUpdate)
        if update.caused_by == f"command:{signed.command_id}":
            updates.append(update)
        return bool(updates)

    _scan(secure.role("gateway"), ROUTE_UPDATES, "fleet-gateway", applied)
    assert [s.stop_id for s in updates[0].plan.stops] == ["st-1"], updates
    # Every agent (ingest, tracking, decisions, ETAs, history) made do with the pipeline's ACLs,
    # and its log shows none of its secrets.
    log = pipeline.tail(10_000_000)
    denials = ("authorization", "no permissions")  # Kafka ACLs, Redis ACLs
    assert not [d for d in denials if d in log.lower()], pipeline.tail()
    profile = secure.profile
    secrets = [profile.password("kafka", "pipeline"), profile.password("redis", "worker")]
    assert not [s for s in secrets if s in log]


def _scan(
    settings: Settings, topic: str, group: str, done: Callable[[bytes], bool], timeout: float = 60
) -> None:
    """Read ``topic`` from the beginning as the settings' principal until ``done`` says so
    (messages ``done`` cannot decode are passed over)."""
    consumer = Consumer(
        confluent_config(settings, {"group.id": f"{group}-{uuid.uuid4().hex[:8]}",
                                    "auto.offset.reset": "earliest", "log_level": 0})
    )  # fmt: skip
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            try:
                if done(msg.value() or b""):
                    return
            except msgspec.MsgspecError:  # other tests' probes ("{}") share these topics
                continue
    finally:
        consumer.close()


# --- MQTT (phones) --------------------------------------------------------------------------


def _mqtt_login(secure: Secure, user: str, password: str, tls: bool = True) -> bool:
    """Whether Mosquitto of the secure profile accepts this login (TLS unless ``tls=False``)."""
    result: list[bool] = []
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        result.append(not reason.is_failure)
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_connect = on_connect
    if tls:
        client.tls_set(ca_certs=str(secure.profile.ca_file))
    try:
        client.connect("127.0.0.1", secure.profile.mqtt_port)
    except OSError:
        return False
    client.loop_start()
    done.wait(5)
    client.loop_stop()
    client.disconnect()
    return bool(result and result[0])


def test_phones_log_in_to_mqtt_over_tls_with_their_own_token_only(secure: Secure) -> None:
    admin = secure.role(ADMIN)
    store = DeviceStore(redis_client(admin))
    device = f"phone-{uuid.uuid4().hex[:6]}"
    token = store.add(device, "drv-1")
    sync_mosquitto(admin, store)  # password and ACL files; the broker reloads them
    assert wait_until(lambda: _mqtt_login(secure, device, token), 10)
    assert not _mqtt_login(secure, device, "guess")
    assert not _mqtt_login(secure, device, token, tls=False)
    store.revoke(device)
    sync_mosquitto(admin, store)
    assert wait_until(lambda: not _mqtt_login(secure, device, token), 10)


def test_a_phone_reaches_the_dashboard_through_the_secure_gateway(
    secure: Secure, worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Phone -> gateway (HTTP with its token; MQTT over TLS with its login) -> Kafka as the
    gateway principal -> a worker as the pipeline -> Redis over TLS -> the dashboard user."""
    run = uuid.uuid4().hex[:8]
    common = {**os.environ, "FLEET_PARTITIONS": str(SECURE_PARTITIONS)}
    common.pop("FLEET_TOPIC_PREFIX", None)
    worker({**common, **secure.profile.env("pipeline"), "FLEET_APP_ID": f"fleet-pipeline-{run}",
            "FLEET_VAR_DIR": str(tmp_path / "var"), "FLEET_METRICS_PORT": str(free_port()),
            "FLEET_WORKER_WEB_PORT": str(free_port())})  # fmt: skip
    admin = secure.role(ADMIN)
    store = DeviceStore(redis_client(admin))
    device, driver = f"phone-{run}", f"drv-{run}"
    token = store.add(device, driver)
    sync_mosquitto(admin, store)
    gateway_env = {**common, **secure.profile.env("gateway"),
                   "FLEET_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
                   "FLEET_MQTT_CLIENT_ID": f"gw-{run}"}  # fmt: skip
    gateway = GatewayProcess(gateway_env, tmp_path / "gateway.log").start()
    dashboard = redis_client(secure.role("reader"), decode_responses=True)
    try:
        basic = base64.b64encode(f"{device}:{token}".encode()).decode()
        query = f"/?id={device}&lat=52.5&lon=13.4&timestamp={int(time.time()) - 20}"
        request = urllib.request.Request(
            gateway.url + query, headers={"Authorization": f"Basic {basic}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        assert wait_until(lambda: dashboard.hget(f"fleet:driver:{driver}", "lat"), 120)
        ping = Ping(driver_id=driver, ts_ms=now_ms() - 1000, lat=52.51, lon=13.41, seq=2)
        phone = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        phone.username_pw_set(device, token)
        phone.tls_set(ca_certs=str(secure.profile.ca_file))
        phone.connect("127.0.0.1", secure.profile.mqtt_port)
        phone.loop_start()
        phone.publish(f"fleet/{driver}/pings", encode(ping), qos=1).wait_for_publish(30)
        phone.loop_stop()
        phone.disconnect()
        reached = wait_until(lambda: dashboard.hget(f"fleet:driver:{driver}", "seq") == "2", 120)
        assert reached, gateway.tail()
    finally:
        gateway.stop()
