"""Expand a panel's SQL as Grafana and the ClickHouse plugin do, to run it outside Grafana.

Grafana first replaces template variables (`${driver}`, `$driver`), then the plugin's backend
expands its macros (grafana/clickhouse-datasource `pkg/macros`, matched as sqlds does: the
name followed by a word boundary, arguments in balanced brackets split at top-level commas).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fleet.errors import FleetError


class MacroError(FleetError, ValueError):
    """A macro the plugin does not know, or with the wrong arguments."""


@dataclass(frozen=True)
class QueryContext:
    """What Grafana sends with a query: the time range and the panel's interval."""

    from_ms: int
    to_ms: int
    interval_s: int = 60


def _seconds(ms: int) -> str:
    return f"toDateTime({ms // 1000})"


def _millis(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _one(args: list[str], name: str) -> str:
    if len(args) != 1:
        raise MacroError(f"$__{name} takes 1 argument, got {len(args)}: {args}")
    return args[0]


def _filter(convert: Callable[[int], str], name: str) -> Callable[[QueryContext, list[str]], str]:
    def expand(ctx: QueryContext, args: list[str]) -> str:
        col = _one(args, name)
        return f"{col} >= {convert(ctx.from_ms)} AND {col} <= {convert(ctx.to_ms)}"

    return expand


MACROS: dict[str, Callable[[QueryContext, list[str]], str]] = {
    "fromTime": lambda ctx, _: _seconds(ctx.from_ms),
    "toTime": lambda ctx, _: _seconds(ctx.to_ms),
    "fromTime_ms": lambda ctx, _: _millis(ctx.from_ms),
    "toTime_ms": lambda ctx, _: _millis(ctx.to_ms),
    "timeFilter": _filter(_seconds, "timeFilter"),
    "timeFilter_ms": _filter(_millis, "timeFilter_ms"),
    "timeInterval": lambda ctx, args: (
        f"toStartOfInterval(toDateTime({_one(args, 'timeInterval')}), "
        f"INTERVAL {max(ctx.interval_s, 1)} second)"
    ),
    "interval_s": lambda ctx, _: str(max(ctx.interval_s, 1)),
}
_ANY_MACRO = re.compile(r"\$__(\w+)")


def _arguments(text: str) -> tuple[list[str], int]:
    """Arguments of a bracketed list at the start of `text`, and the list's length."""
    if not text.startswith("("):
        return [], 0
    depth, args, current = 0, [], ""
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return [a for a in args if a], i + 1
        elif char == "," and depth == 1:
            args.append(current.strip())
            current = ""
            continue
        current += char
    raise MacroError(f"unclosed bracket in macro arguments: {text[:60]!r}")


def expand_macros(sql: str, ctx: QueryContext) -> str:
    """The SQL the plugin sends to ClickHouse for this time range and interval."""
    out, pos = [], 0
    for match in _ANY_MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already expanded
        name = match.group(1)
        if name not in MACROS:
            raise MacroError(f"unknown macro $__{name}")
        args, length = _arguments(sql[match.end() :])
        out.append(sql[pos : match.start()])
        out.append(MACROS[name](ctx, [expand_macros(a, ctx) for a in args]))
        pos = match.end() + length
    out.append(sql[pos:])
    return "".join(out)


def substitute_variables(text: str, variables: Mapping[str, str]) -> str:
    """Grafana's plain variable interpolation: `${name}` and `$name` become the value."""
    for name, value in variables.items():
        text = text.replace(f"${{{name}}}", value)
        text = re.sub(rf"\${re.escape(name)}\b", value.replace("\\", "\\\\"), text)
    return text


def expand(sql: str, ctx: QueryContext, variables: Mapping[str, str] | None = None) -> str:
    """Variables, then macros: the query as ClickHouse receives it."""
    return expand_macros(substitute_variables(sql, variables or {}), ctx)
