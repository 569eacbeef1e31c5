"""`fleet dispatch ...`: a dispatcher's actions as DispatchCommands on `fleet.commands`.

What a dispatcher sees on the dashboards they act on here: re-optimise a route, move stops to
another driver, accept a waiting proposal, edit or cancel a route. Each command is validated
against the contract before it is sent, keyed by route_id, and the CLI returns once Kafka
acknowledged it; the pipeline answers a command it cannot apply on the dead-letter topic.
"""

from __future__ import annotations

import argparse
import getpass
import uuid
from typing import Any

from fleet.settings import Settings


def build_command(route: str, kind: str, issued_by: str, **fields: Any) -> Any:
    """A DispatchCommand checked against the contract (InvalidCommand names what is wrong)."""
    import msgspec

    from fleet.clock import now_ms
    from fleet.decode import decode_struct
    from fleet.errors import InvalidCommand, InvalidMessage
    from fleet.records import DispatchCommand

    draft = {"command_id": f"cmd-{uuid.uuid4().hex[:16]}", "route_id": route, "type": kind,
             "issued_ms": now_ms(), "issued_by": issued_by, **fields}  # fmt: skip
    draft = {k: v for k, v in draft.items() if v is not None}
    try:  # through the contract's decoder: identifiers, types and values checked
        return decode_struct(
            msgspec.json.encode(draft), msgspec.json.Decoder(DispatchCommand), 65_536
        )
    except InvalidMessage as exc:
        raise InvalidCommand(exc.reason, exc.detail) from None


def send(settings: Settings, command: Any) -> None:
    """Publish one command keyed by its route and wait for Kafka's acknowledgement."""
    from confluent_kafka import KafkaException, Producer

    from fleet.clients import confluent_config
    from fleet.errors import ServiceUnavailable
    from fleet.identity import signed_headers
    from fleet.records import encode
    from fleet.topics import COMMANDS, topic_name

    value = encode(command)
    headers = None
    if settings.dispatch_key is not None:  # signed: the pipeline checks who sent it
        key = settings.dispatch_key.get_secret_value()
        headers = signed_headers(command.issued_by, key, value)
    errors: list[str] = []
    producer = Producer(
        confluent_config(settings, {"acks": "all", "message.timeout.ms": 15_000, "log_level": 3})
    )
    try:
        producer.produce(
            topic_name(settings, COMMANDS), key=command.route_id.encode(), value=value,
            headers=headers, on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )  # fmt: skip
        left = producer.flush(20)
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    if left or errors:
        raise ServiceUnavailable(
            f"command {command.command_id} not acknowledged by Kafka at "
            f"{settings.kafka_bootstrap}: {errors or 'timed out'}"
        )


def _handler(kind: str, fields: Any) -> Any:
    def handle(args: argparse.Namespace, settings: Settings) -> int:
        from fleet.records import encode

        command = build_command(args.route, kind, args.by, **fields(args))
        send(settings, command)
        print(encode(command).decode())
        return 0

    return handle


def _stop(args: argparse.Namespace) -> dict[str, Any]:
    from fleet.errors import InvalidCommand
    from fleet.history.cli import parse_time_ms

    if not (-90 <= args.lat <= 90 and -180 <= args.lon <= 180):
        raise InvalidCommand(
            "coordinates_out_of_range",
            f"lat={args.lat} lon={args.lon} outside [-90, 90]/[-180, 180]",
        )
    stop: dict[str, Any] = {"stop_id": args.stop_id, "lat": args.lat, "lon": args.lon}
    for field, text in (("window_start_ms", args.window_start), ("window_end_ms", args.window_end)):
        if text is not None:
            stop[field] = parse_time_ms(text)
    return {"stop": stop}


ACTIONS: dict[str, tuple[str, str, Any]] = {
    # name: (command type, help, fields from the arguments)
    "optimize": ("optimize", "re-plan the route's remaining stops now",
                 lambda a: {"scope": a.scope}),
    "reassign": ("reassign", "move stops to another driver's route",
                 lambda a: {"to_driver_id": a.to, "stop_ids": a.stop_ids}),
    "accept": ("accept_proposal", "apply a waiting re-plan proposal as it stands",
               lambda a: {"proposal_id": a.proposal_id}),
    "add-stop": ("add_stop", "add a stop to the route", _stop),
    "remove-stop": ("remove_stop", "remove a stop from the route",
                    lambda a: {"stop_id": a.stop_id}),
    "resequence": ("resequence", "set the order of the remaining stops",
                   lambda a: {"stop_ids": a.stop_ids}),
    "lock": ("lock_stop", "keep a stop on this route at its place (the optimiser won't move it)",
             lambda a: {"stop_id": a.stop_id}),
    "unlock": ("unlock_stop", "let the optimiser move a locked stop again",
               lambda a: {"stop_id": a.stop_id}),
    "cancel": ("cancel_route", "cancel the route", lambda a: {}),
}  # fmt: skip


def _arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("route", help="route_id")
    if name == "optimize":
        parser.add_argument("--scope", choices=["route", "zone"], default="route",
                            help="zone: may move stops between nearby routes")  # fmt: skip
    elif name == "reassign":
        parser.add_argument("--to", required=True, help="driver_id that takes the stops")
        parser.add_argument("stop_ids", nargs="+")
    elif name == "accept":
        parser.add_argument("proposal_id")
    elif name == "add-stop":
        parser.add_argument("stop_id")
        parser.add_argument("lat", type=float)
        parser.add_argument("lon", type=float)
        parser.add_argument("--window-start", default=None, help="epoch ms or ISO-8601")
        parser.add_argument("--window-end", default=None, help="epoch ms or ISO-8601")
    elif name in ("remove-stop", "lock", "unlock"):
        parser.add_argument("stop_id")
    elif name == "resequence":
        parser.add_argument("stop_ids", nargs="+")


def register(subparsers: Any) -> None:
    """Add `fleet dispatch ...` to the `fleet` command's subparsers."""
    dispatch = subparsers.add_parser(
        "dispatch", help="send a dispatcher's command (DispatchCommand) on fleet.commands"
    )
    dsub = dispatch.add_subparsers(dest="dispatch_command", required=True)
    for name, (kind, text, fields) in ACTIONS.items():
        parser = dsub.add_parser(name, help=text)
        _arguments(name, parser)
        parser.add_argument("--by", default=f"dispatcher:{getpass.getuser()}",
                            help="issued_by (default dispatcher:<user>)")  # fmt: skip
        parser.set_defaults(handler=_handler(kind, fields))
