"""Driver gateway benchmarks, on the real stack (Kafka, Redis, Mosquitto, a worker, the gateway):

(a) a dispatcher's command on Kafka -> the RouteUpdate delivered to the driver's MQTT
    subscriber and SSE client (latency from the command's ``issued_ms``);
(b) pings over HTTP (OsmAnd GET, one ping per request) at a fixed rate -> live position in
    Redis (the worker's ``fleet_ping_to_redis_seconds{clock="event"}``, from the ping's time,
    which is the send time);
(c) the gateway's throughput: requests/s it answers at saturation, per core of CPU it used.

    .venv/bin/python -m load_tests.bench_gateway --rate 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from fleet import services
from fleet.clock import now_ms
from fleet.settings import PROJECT_ROOT, Settings
from fleet.topics import COMMANDS, ROUTES, topic_name
from load_tests.gateway_process import GatewayProcess
from load_tests.harness import WorkerProcess, free_port, scrape
from load_tests.load.probe import quantile
from tests.conftest import produce
from tests.integration.gateway_clients import MqttListener

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def plan(route: str, driver: str, stops: int = 4) -> dict[str, Any]:
    start = now_ms()
    return {"route_id": route, "driver_id": driver, "version": 1, "shift_start_ms": start,
            "shift_end_ms": start + 8 * 3_600_000,
            "stops": [{"stop_id": f"{route}-s{i}", "lat": 52.50 + i * 0.01, "lon": 13.40,
                       "window_end_ms": start + 7 * 3_600_000} for i in range(stops)]}  # fmt: skip


class SseCollector:
    """SSE clients of many drivers; records (caused_by, receive ms) of each route update."""

    def __init__(self, url: str, drivers: list[str]) -> None:
        self.url, self.drivers = url, drivers
        self.received: dict[str, int] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            tasks = [asyncio.create_task(self._stream(session, d)) for d in self.drivers]
            await asyncio.sleep(1)
            self.ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            for t in tasks:
                t.cancel()

    async def _stream(self, session: aiohttp.ClientSession, driver: str) -> None:
        async with session.get(f"{self.url}/v1/drivers/{driver}/route-updates") as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    update = json.loads(line[6:])
                    self.received.setdefault(str(update.get("caused_by")), now_ms())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def bench_push(env: dict[str, str], settings: Settings, gw_url: str, drivers: int,
               commands: int, rate: float) -> dict[str, float]:  # fmt: skip
    """add_stop commands on fleet.commands -> RouteUpdates at the MQTT and SSE clients."""
    run = env["FLEET_TOPIC_PREFIX"].strip(".")
    ids = [(f"rt-{run}-{i}", f"drv-{run}-{i}") for i in range(drivers)]
    produce(settings.kafka_bootstrap, topic_name(settings, ROUTES),
            [(r.encode(), json.dumps(plan(r, d)).encode()) for r, d in ids])  # fmt: skip
    time.sleep(5)  # the routes agent stores the plans
    mqtt_got: dict[str, int] = {}
    listener = MqttListener(f"bench-{run}", f"{settings.topic_prefix}fleet/+/route")

    def on_route(_c: object, _u: object, m: Any) -> None:
        mqtt_got.setdefault(str(json.loads(m.payload).get("caused_by")), now_ms())

    listener.client.on_message = on_route
    sse = SseCollector(gw_url, [d for _, d in ids])
    sse.ready.wait(30)
    sent: dict[str, int] = {}
    rng = random.Random(7)
    topic = topic_name(settings, COMMANDS)
    for i in range(commands):
        route, _driver = ids[rng.randrange(drivers)]
        issued = now_ms()
        cmd = {"command_id": f"cmd-{run}-{i}", "route_id": route, "type": "add_stop",
               "issued_ms": issued, "issued_by": "dispatcher:bench",
               "stop": {"stop_id": f"add-{run}-{i}", "lat": 52.52, "lon": 13.39}}  # fmt: skip
        produce(settings.kafka_bootstrap, topic, [(route.encode(), json.dumps(cmd).encode())])
        sent[f"command:{cmd['command_id']}"] = issued
        time.sleep(max(0.0, 1 / rate - (now_ms() - issued) / 1000))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        set(sent) <= set(mqtt_got) and set(sent) <= set(sse.received)
    ):
        time.sleep(0.5)
    sse.stop()
    listener.close()
    mqtt_ms = [mqtt_got[k] - v for k, v in sent.items() if k in mqtt_got]
    sse_ms = [sse.received[k] - v for k, v in sent.items() if k in sse.received]
    return {"commands": len(sent), "mqtt_delivered": len(mqtt_ms), "sse_delivered": len(sse_ms),
            "mqtt_p50_ms": pct(mqtt_ms, 0.5), "mqtt_p99_ms": pct(mqtt_ms, 0.99),
            "sse_p50_ms": pct(sse_ms, 0.5), "sse_p99_ms": pct(sse_ms, 0.99)}  # fmt: skip


async def _send_pings(url: str, rate: float, seconds: float, drivers: int,
                      concurrency: int) -> tuple[int, int, float]:  # fmt: skip
    """OsmAnd GETs at ``rate`` per second (0 = as fast as possible) over ``concurrency``
    keep-alive connections; (answered 200, failed, seconds). A bare HTTP/1.1 client: the
    load generator shares the machine, so it must cost less than the server it measures."""
    ok = failed = 0
    queue: asyncio.Queue[str | None] = asyncio.Queue(concurrency * 4)
    run = uuid.uuid4().hex[:6]
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    async def client() -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection(host, int(port))
        while (path := await queue.get()) is not None:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head[9:12] == b"200":
                ok += 1
            else:
                failed += 1
        writer.close()

    workers = [asyncio.create_task(client()) for _ in range(concurrency)]
    t0 = time.monotonic()
    i = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        if rate and i >= elapsed * rate:
            await asyncio.sleep(0.002)
            continue
        d = i % drivers
        lat = 52.40 + (d % 100) * 0.002 + (i // drivers) * 1e-5
        await queue.put(f"/?id=gw-{run}-{d}&lat={lat:.6f}&lon=13.4&timestamp={now_ms()}"
                        "&speed=20.0&bearing=90&accuracy=8")  # fmt: skip
        i += 1
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    return ok, failed, time.monotonic() - t0


def bench_pings(gw_url: str, metrics_port: int, rate: float, seconds: float,
                drivers: int) -> dict[str, float]:  # fmt: skip
    """Pings over HTTP at ``rate``/s -> live positions: the worker's latency histogram."""
    ok, failed, took = asyncio.run(_send_pings(gw_url, rate, seconds, drivers, 64))
    time.sleep(3)
    samples = scrape(metrics_port).get("fleet_ping_to_redis_seconds_bucket", [])
    buckets = sorted((float(lb["le"]), v) for lb, v in samples if lb.get("clock") == "event")
    p50, p99 = (quantile(buckets, q) * 1000 for q in (0.5, 0.99))
    return {"sent_ok": ok, "failed": failed, "rate": ok / took, "p50_ms": p50, "p99_ms": p99,
            "written": buckets[-1][1] if buckets else 0}  # fmt: skip


def bench_throughput(gw: GatewayProcess, seconds: float, concurrency: int) -> dict[str, float]:
    """As many OsmAnd requests as the gateway answers; requests/s per CPU second it used."""
    assert gw.proc is not None
    cpu0 = cpu_seconds(gw.proc.pid)
    ok, failed, took = asyncio.run(_send_pings(gw.url, 0, seconds, 2000, concurrency))
    cpu = cpu_seconds(gw.proc.pid) - cpu0
    return {"ok": ok, "failed": failed, "per_s": ok / took, "cpu_s": cpu,
            "per_core_s": ok / cpu if cpu else float("nan"), "cores": cpu / took}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="pings/s over HTTP (b)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drivers", type=int, default=500)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--command-rate", type=float, default=10.0)
    parser.add_argument("--push-drivers", type=int, default=50)
    args = parser.parse_args()

    base = Settings()
    services.up(base, lambda _m: None, with_prometheus=False)
    run = uuid.uuid4().hex[:8]
    tmp = PROJECT_ROOT / "var" / "bench" / f"gateway-{run}"
    tmp.mkdir(parents=True, exist_ok=True)
    metrics_port = free_port()
    env = {**os.environ, "FLEET_TOPIC_PREFIX": f"bgw{run}.", "FLEET_APP_ID": f"bgw-{run}",
           "FLEET_METRICS_PORT": str(metrics_port), "FLEET_VAR_DIR": str(tmp),
           "FLEET_PARTITIONS": "4", "FLEET_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
           "FLEET_MQTT_CLIENT_ID": f"bgw-{run}", "FLEET_GATEWAY_RATE_PER_S": "1000"}  # fmt: skip
    settings = Settings(topic_prefix=env["FLEET_TOPIC_PREFIX"], app_id=env["FLEET_APP_ID"],
                        partitions=4)  # fmt: skip
    services.ensure_topics(settings)
    worker = WorkerProcess(env, tmp / "worker.log", loglevel="warn").start()
    gw = GatewayProcess(env, tmp / "gateway.log").start()
    try:
        push = bench_push(env, settings, gw.url, args.push_drivers, args.commands,
                          args.command_rate)  # fmt: skip
        print(
            f"(a) command on Kafka -> route update at the app, {push['commands']} add_stop "
            f"commands at {args.command_rate:g}/s over {args.push_drivers} drivers: MQTT "
            f"{push['mqtt_delivered']} delivered, p50 {push['mqtt_p50_ms']:.0f} ms, p99 "
            f"{push['mqtt_p99_ms']:.0f} ms; SSE {push['sse_delivered']} delivered, p50 "
            f"{push['sse_p50_ms']:.0f} ms, p99 {push['sse_p99_ms']:.0f} ms (target p99 <= 1 s)"
        )
        pings = bench_pings(gw.url, metrics_port, args.rate, args.seconds, args.drivers)
        print(
            f"(b) pings over HTTP -> Redis: {pings['sent_ok']:,} answered 200 "
            f"({pings['failed']} failed) at {pings['rate']:,.0f}/s over {args.drivers} devices; "
            f"{pings['written']:,.0f} live writes; send -> Redis p50 {pings['p50_ms']:.0f} ms, "
            f"p99 {pings['p99_ms']:.0f} ms (target p99 <= 500 ms at 1,000/s)"
        )
        worker.stop()  # (c) measures the gateway alone
        tput = bench_throughput(gw, min(args.seconds, 20.0), 128)
        print(
            f"(c) gateway throughput: {tput['per_s']:,.0f} requests/s answered 200 "
            f"({tput['failed']} failed) using {tput['cores']:.2f} cores = "
            f"{tput['per_core_s']:,.0f} requests/s per core"
        )
    finally:
        gw.stop()
        worker.stop()
        services.delete_topics(base.kafka_bootstrap, (env["FLEET_TOPIC_PREFIX"], f"bgw-{run}"))


if __name__ == "__main__":
    main()
