"""`fleet gateway`: the driver gateway (HTTP and MQTT in, route updates out)."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.settings import Settings


def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging

    from gateway.service import serve

    logging.basicConfig(
        level=args.loglevel.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings))
    return 0


def register(subparsers: Any) -> None:
    """Add `fleet gateway` to the `fleet` command's subparsers."""
    gateway = subparsers.add_parser(
        "gateway", help="run the driver gateway (OsmAnd/Traccar, OwnTracks, MQTT, SSE)"
    )
    gateway.add_argument("-l", "--loglevel", default="info")
    gateway.set_defaults(handler=_cmd_gateway)
