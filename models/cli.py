"""`fleet eta ...`: train, evaluate, promote, list models; accuracy of published ETAs (--json)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fleet.settings import Settings

END_OF_TIME_MS = 2**62


def _print(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, sort_keys=True) if args.json else text)


def _registry(settings: Settings) -> Any:
    from models.registry import ModelRegistry, registry_root

    return ModelRegistry(registry_root(settings))


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.history.access import open_reader
    from fleet.history.cli import parse_time_ms
    from models.estimators import EtaModelParams
    from models.training import train

    since, until = parse_time_ms(args.since), parse_time_ms(args.until)
    store = open_reader(settings)
    try:
        params = EtaModelParams(seed=args.seed)
        artifact, meta = train(store, since, until, settings.zone_resolution, params)
    finally:
        store.close()
    version = _registry(settings).register(artifact, meta)
    _print(args, {"version": version, **meta}, version)
    return 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.clock import now_ms
    from fleet.history.access import open_reader
    from fleet.history.cli import parse_time_ms
    from models.dataset import load_examples
    from models.evaluation import evaluate, write_report

    registry = _registry(settings)
    meta = registry.metadata(args.version)
    artifact = registry.load(args.version)
    window = meta["training_window"]
    since = parse_time_ms(args.since) if args.since else int(window["until_ms"])
    until = parse_time_ms(args.until) if args.until else END_OF_TIME_MS
    store = open_reader(settings)
    try:
        examples = load_examples(store, since, until, artifact.speeds, artifact.zone_resolution)
    finally:
        store.close()
    ev = evaluate(artifact, examples)
    overlap = since < int(window["until_ms"]) and until > int(window["since_ms"])
    report_dir = registry.report_dir(args.version) / f"{since}-{min(until, 10**13)}"
    report = write_report(
        report_dir,
        args.version,
        ev,
        f"Held-out period [{since}, {until}) ms; training window "
        f"[{window['since_ms']}, {window['until_ms']}) ms"
        + (" (OVERLAPS the training window: not held out)" if overlap else ""),
    )
    result = {
        "version": args.version,
        **ev.metrics,
        "since_ms": since,
        "until_ms": until,
        "held_out": not overlap,
        "report": str(report),
        "evaluated_ms": now_ms(),
    }
    if ev.metrics.get("n", 0) and not overlap:
        registry.add_evaluation(args.version, result)
    m = ev.metrics
    _print(
        args,
        result,
        (
            f"{args.version}: n={m.get('n')} mae_s={m.get('mae_s')} "
            f"baseline_mae_s={m.get('baseline_mae_s')} gain={m.get('gain_vs_baseline')} "
            f"p90_abs_error_s={m.get('p90_abs_error_s')} "
            f"coverage_p10_p90={m.get('coverage_p10_p90')}"
            f"{'' if not overlap else ' (overlaps training: not recorded)'}\nreport: {report}"
        ),
    )
    return 0


def _cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    from models.checks import PromotionPolicy, promotion_checks

    registry = _registry(settings)
    meta = registry.metadata(args.version)
    evaluations = meta.get("evaluations") or []
    checks = promotion_checks(
        registry.load(args.version), evaluations[-1] if evaluations else None, PromotionPolicy()
    )
    passed = all(c.passed for c in checks)
    previous = registry.promoted()
    record = registry.set_promoted(args.version) if passed else None
    payload = {
        "version": args.version,
        "promoted": passed,
        "previous": previous,
        "checks": [c.as_dict() for c in checks],
        **(record or {}),
    }
    lines = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    verdict = (
        f"promoted {args.version} (was {previous})"
        if passed
        else f"refused: {args.version} fails its checks; {previous} stays promoted"
    )
    _print(args, payload, "\n".join([*lines, verdict]))
    return 0 if passed else 1


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    promoted = registry.promoted()
    rows = []
    for version in registry.versions():
        meta = registry.metadata(version)
        evaluations = meta.get("evaluations") or []
        metrics = dict(meta.get("metrics", {}))
        if evaluations:
            metrics["held_out"] = evaluations[-1]
        rows.append(
            {
                "version": version,
                "promoted": version == promoted,
                "created_ms": meta["created_ms"],
                "metrics": metrics,
                "training_window": meta.get("training_window"),
                "code_version": meta.get("code_version"),
            }
        )
    text = (
        "\n".join(
            f"{'*' if r['promoted'] else ' '} {r['version']:<8} created_ms={r['created_ms']} "
            + (
                f"held-out mae_s={r['metrics']['held_out'].get('mae_s')} "
                f"coverage={r['metrics']['held_out'].get('coverage_p10_p90')}"
                if "held_out" in r["metrics"]
                else "not evaluated"
            )
            for r in rows
        )
        or "(no models)"
    )
    _print(args, rows, text)
    return 0


def _cmd_accuracy(args: argparse.Namespace, settings: Settings) -> int:
    from fleet.history.access import open_reader
    from fleet.history.cli import parse_time_ms
    from models.accuracy import accuracy

    since = parse_time_ms(args.since)
    until = parse_time_ms(args.until) if args.until else END_OF_TIME_MS
    by = tuple(args.by.split(","))
    store = open_reader(settings)
    try:
        rows = accuracy(store, since, until, by, settings.zone_resolution)
    finally:
        store.close()
    _print(args, rows, "\n".join(json.dumps(r) for r in rows) or "(no predictions with arrivals)")
    return 0


def register(subparsers: Any) -> None:
    """Add `fleet eta {train,evaluate,promote,list,accuracy}` to the `fleet` subparsers."""
    eta = subparsers.add_parser("eta", help="ETA models: train, evaluate, promote, list")
    esub = eta.add_subparsers(dest="eta_command", required=True)

    train = esub.add_parser("train", help="fit a model on a period of history (prints version)")
    train.add_argument("--since", required=True, help="epoch ms or ISO-8601 (inclusive)")
    train.add_argument("--until", required=True, help="epoch ms or ISO-8601 (exclusive)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_cmd_train)

    evaluate = esub.add_parser("evaluate", help="held-out accuracy and a markdown report")
    evaluate.add_argument("version")
    evaluate.add_argument("--since", default=None, help="default: end of the training window")
    evaluate.add_argument("--until", default=None, help="default: everything after --since")
    evaluate.set_defaults(handler=_cmd_evaluate)

    promote = esub.add_parser("promote", help="make a version live if it passes its checks")
    promote.add_argument("version")
    promote.set_defaults(handler=_cmd_promote)

    listing = esub.add_parser("list", help="registered versions, the promoted one marked *")
    listing.set_defaults(handler=_cmd_list)

    acc = esub.add_parser("accuracy", help="published ETAs vs actual arrivals, from history")
    acc.add_argument("--since", default="0", help="prediction time, epoch ms or ISO-8601")
    acc.add_argument("--until", default=None)
    acc.add_argument(
        "--by",
        default="model_version,horizon_min",
        help="comma-separated: model_version, hour, zone, horizon_min",
    )
    acc.set_defaults(handler=_cmd_accuracy)

    for parser in (train, evaluate, promote, listing, acc):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
