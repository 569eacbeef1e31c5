"""JSON Schemas of the contract's messages, generated from the project's record types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from fleet.records import CONTRACT_RECORDS, IDENTIFIER_PATTERN, IDENTIFIER_RE

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema of one contract record, self-contained ($defs inlined in the document)."""
    record = CONTRACT_RECORDS[name]
    # Python validates identifiers with \A...\Z; JSON Schema regexes are ECMA, where `$` is
    # already the end of the string, so the schema states the portable form.
    text = json.dumps(msgspec.json.schema(record))
    schema = json.loads(text.replace(json.dumps(IDENTIFIER_RE)[1:-1], IDENTIFIER_PATTERN))
    doc: dict[str, Any] = {"$schema": SCHEMA_DIALECT, "$id": f"fleet/{name}.schema.json"}
    defs = schema.get("$defs", {})
    root = defs.get(record.__name__, schema)
    doc.update(root)
    # Unknown extra fields are allowed (forward compatibility): never additionalProperties=false.
    doc.pop("additionalProperties", None)
    if defs:
        doc["$defs"] = defs
    return doc


def export_schemas(directory: Path) -> list[Path]:
    """Write one ``<Record>.schema.json`` per contract message; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACT_RECORDS:
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
