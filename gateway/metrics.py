"""The gateway's Prometheus metrics (served on its own /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("fleet_gateway_requests_total", "HTTP requests answered", ["route", "status"])
ACCEPTED = Counter(
    "fleet_gateway_messages_total", "Messages written to Kafka, acknowledged", ["channel", "kind"]
)
DEAD_LETTERS = Counter(
    "fleet_gateway_dead_letters_total", "Rejected inputs sent to the dead-letter topic",
    ["channel", "reason"],
)  # fmt: skip
IGNORED = Counter(
    "fleet_gateway_ignored_total", "Inputs answered, not forwarded (OwnTracks non-location)",
    ["channel", "why"],
)  # fmt: skip
RATE_LIMITED = Counter("fleet_gateway_rate_limited_total", "Refused by a rate limit", ["channel"])
KAFKA_FAILURES = Counter(
    "fleet_gateway_kafka_failures_total", "Writes Kafka did not acknowledge in time", ["channel"]
)
ACK_SECONDS = Histogram(
    "fleet_gateway_ack_seconds", "Time from receiving an input to Kafka's acknowledgement",
    ["channel"], buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
PUSHES = Counter(
    "fleet_gateway_pushes_total", "Route updates and ETAs pushed to apps", ["transport", "kind"]
)
SSE_CLIENTS = Gauge("fleet_gateway_sse_clients", "Open Server-Sent Events streams")
MQTT_CONNECTED = Gauge("fleet_gateway_mqtt_connected", "1 while the MQTT bridge is connected")
