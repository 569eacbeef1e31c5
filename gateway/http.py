"""The gateway's HTTP endpoints (paths in shared/contract/README.md, "Driver gateway").

Answers: 200 once Kafka acknowledged everything the request carried; 400 with the reasons
(each rejected item also dead-lettered); 403 for an unregistered device when only registered
ones may report; 413 for a body over the size limit; 429 with ``Retry-After`` over a device's
rate limit; 503 with ``Retry-After`` when Kafka did not acknowledge in time (retry: nothing
of the request is to be taken as stored). With ``FLEET_GATEWAY_DEVICE_TOKENS`` every request
carries its device's token (fleet/devices.py): 401 without a valid one, 403 when a device
reports as, or asks for the route of, another device or driver.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleet.devices import DeviceAuthenticator, DeviceRefused, parse_authorization
from fleet.errors import InvalidMessage, ServiceUnavailable
from fleet.records import IDENTIFIER_RE
from gateway import metrics
from gateway.errors import RateLimited
from gateway.ingest import Ingress, Kind, Outcome
from gateway.protocols import owntracks_device, parse_osmand, parse_owntracks, parse_traccar_json
from gateway.push import Push, RouteFeed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEARTBEAT_S = 15.0
RETRY_AFTER_S = 5
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}  # fmt: skip

IDENTIFIER = re.compile(IDENTIFIER_RE)


@dataclass(frozen=True)
class EdgeConfig:
    """Limits and status probes of the HTTP edge."""

    max_body_bytes: int
    mqtt_connected: Callable[[], bool] | None = None


INGRESS = web.AppKey("ingress", Ingress)
FEED = web.AppKey("feed", RouteFeed)
EDGE = web.AppKey("edge", EdgeConfig)
AUTH = web.AppKey("auth", DeviceAuthenticator)
DEVICE = "device"  # request key: the authenticated (device id, driver id)
OPEN_PATHS = ("/healthz", "/metrics")


def _error(status: int, reason: str, detail: str, **extra: object) -> web.Response:
    return web.json_response({"error": reason, "detail": detail, **extra}, status=status)


def _outcome_response(outcome: Outcome, ok: web.Response) -> web.Response:
    if not outcome.rejected:
        return ok
    first = outcome.rejected[0]
    status = 403 if first.reason == "unknown_device" else 400
    return web.json_response({"error": first.reason, "detail": first.detail,
                              **outcome.as_dict()}, status=status)  # fmt: skip


@web.middleware
async def device_tokens(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With device tokens on: only a device with a valid token gets past (401 otherwise)."""
    auth = request.app.get(AUTH)
    if auth is None or request.path in OPEN_PATHS:
        return await handler(request)
    try:
        device, token = parse_authorization(request.headers.get("Authorization"))
        request[DEVICE] = (device, await auth.authenticate(device, token))
    except DeviceRefused as exc:
        response = _error(401, "unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = 'Basic realm="fleet gateway"'
        return response
    return await handler(request)


def _not_own_device(request: web.Request, device_ids: list[str]) -> web.Response | None:
    """403 when an authenticated device reports as another device."""
    own = request.get(DEVICE)
    if own is None:
        return None
    others = sorted({d for d in device_ids if d != own[0]})
    if others:
        return _error(403, "forbidden", f"device {own[0]!r} may not report as {others[0]!r}")
    return None


@web.middleware
async def edge_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map the edge's failures to answers an app can act on, and count every answer."""
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unknown"
    try:
        response = await handler(request)
    except RateLimited as exc:
        wait = max(1, round(exc.retry_after_s + 0.5))
        response = _error(429, "rate_limited", str(exc), retry_after_s=wait)
        response.headers["Retry-After"] = str(wait)
    except ServiceUnavailable as exc:
        response = _error(503, "kafka_unavailable", str(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    except web.HTTPRequestEntityTooLarge as exc:
        response = _error(413, "too_large", exc.text or "request body over the size limit")
    metrics.REQUESTS.labels(name, str(response.status)).inc()
    return response


async def _body(request: web.Request) -> bytes:
    limit = request.app[EDGE].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit, actual_size=request.content_length,
            text=f"{request.content_length} bytes > {limit} bytes",
        )  # fmt: skip
    return await request.read()


async def osmand(request: web.Request) -> web.Response:
    """OsmAnd / Traccar Client: GET query, POST form or query, Traccar Client 9 JSON."""
    ingress = request.app[INGRESS]
    body = await _body(request) if request.method == "POST" else b""
    now = int(time.time() * 1000)
    try:
        if request.query:
            raw = request.query_string.encode()
            fixes = [parse_osmand(request.query, now)]
        elif body.lstrip()[:1] == b"{" or request.content_type == "application/json":
            raw = body
            fixes = parse_traccar_json(body, now)
        else:
            raw = body
            fixes = [parse_osmand(dict(parse_qsl(body.decode("utf-8", "replace"))), now)]
    except InvalidMessage as exc:
        return _outcome_response(await ingress.reject("http", raw, exc), web.Response())
    forbidden = _not_own_device(request, [fix.device_id for fix in fixes])
    if forbidden is not None:
        return forbidden
    return _outcome_response(await ingress.fixes("http", fixes, raw), web.Response())


async def owntracks(request: web.Request) -> web.Response:
    """OwnTracks HTTP mode: answered ``[]``; non-location messages are ignored."""
    ingress = request.app[INGRESS]
    body = await _body(request)
    user = request.headers.get("X-Limit-U") or request.query.get("u")
    device = request.headers.get("X-Limit-D") or request.query.get("d")
    done = web.json_response([])
    try:
        fix = parse_owntracks(body, owntracks_device(user, device))
    except InvalidMessage as exc:
        return _outcome_response(await ingress.reject("http", body, exc), done)
    if fix is None:
        metrics.IGNORED.labels("http", "owntracks_not_location").inc()
        return done
    forbidden = _not_own_device(request, [fix.device_id])
    if forbidden is not None:
        return forbidden
    return _outcome_response(await ingress.fixes("http", [fix], body), done)


def _contract(kind: Kind) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        body = await _body(request)
        own = request.get(DEVICE)  # an authenticated device sends only its driver's items
        driver = own[1] if own is not None else None
        outcome = await request.app[INGRESS].contract("http", kind, body, driver)
        return _outcome_response(outcome, web.json_response(outcome.as_dict()))

    return handle


def _sse(push: Push) -> bytes:
    event = "route-update" if push.kind == "route" else "eta"
    head = f"id: {push.version}\n" if push.version is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + push.payload + b"\n\n"


async def route_updates(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of one driver: its latest plan first (unless ``Last-Event-ID`` is
    that version already), then every new RouteUpdate (``id`` = version) and ETA."""
    driver = request.match_info["driver_id"]
    if not IDENTIFIER.match(driver):
        return _error(400, "invalid_identifier", f"driver_id={driver!r} breaks the id rule")
    own = request.get(DEVICE)
    if own is not None and own[1] != driver:
        return _error(403, "forbidden", f"device {own[0]!r} may read only its driver's route")
    feed = request.app[FEED]
    seen = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    # Read the latest and subscribe without an await in between: nothing slips through.
    backlog = feed.latest(driver)
    queue = feed.subscribe(driver)
    response = web.StreamResponse(headers=SSE_HEADERS)
    metrics.SSE_CLIENTS.inc()
    sent: set[SentKey] = set()
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        for push in backlog:
            if push.kind == "route" and seen is not None and seen == str(push.version):
                continue
            await _send(response, push, sent)
        while True:
            try:
                push = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            await _send(response, push, sent)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(driver, queue)
        metrics.SSE_CLIENTS.dec()
    return response


SentKey = tuple[str, int | None, bytes]


async def _send(response: web.StreamResponse, push: Push, sent: set[SentKey]) -> None:
    key = (push.kind, push.version, push.payload if push.version is None else b"")
    if key in sent:
        return
    sent.add(key)
    await response.write(_sse(push))
    metrics.PUSHES.labels("sse", push.kind).inc()


async def healthz(request: web.Request) -> web.Response:
    """200 while Kafka acknowledges writes (503 after a failed write, until the next success)."""
    probe = request.app[EDGE].mqtt_connected
    kafka_error = request.app[INGRESS].writer.last_error
    state = {"status": "ok" if kafka_error is None else "degraded", "kafka_error": kafka_error,
             "mqtt_connected": probe() if probe is not None else None}  # fmt: skip
    return web.json_response(state, status=200 if kafka_error is None else 503)


async def metrics_endpoint(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(ingress: Ingress, feed: RouteFeed, max_body_bytes: int,
              mqtt_connected: Callable[[], bool] | None = None,
              devices: DeviceAuthenticator | None = None) -> web.Application:  # fmt: skip
    """The aiohttp application with every gateway route (``devices``: tokens required)."""
    middlewares = [edge_errors, device_tokens]
    app = web.Application(middlewares=middlewares, client_max_size=max_body_bytes)
    if devices is not None:
        app[AUTH] = devices
    app[INGRESS] = ingress
    app[FEED] = feed
    app[EDGE] = EdgeConfig(max_body_bytes, mqtt_connected)
    app.router.add_route("GET", "/", osmand)
    app.router.add_route("POST", "/", osmand)
    app.router.add_post("/owntracks", owntracks)
    app.router.add_post("/v1/pings", _contract("pings"))
    app.router.add_post("/v1/events", _contract("events"))
    app.router.add_get("/v1/drivers/{driver_id}/route-updates", route_updates)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
