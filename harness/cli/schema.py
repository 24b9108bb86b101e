"""`harness schema`: the JSON Schema of a study file (harness/spec/jsonschema.py), for editors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.verbs import verb

ORDER = 4  # after the analysis verbs


def _schema_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, metavar="FILE", help="write the schema to FILE (default: print it)")


@verb(
    "schema",
    "JSON Schema of the study file (for an editor's YAML language server)",
    _schema_options,
    description="Generated from the tables the study loader validates with: every key, its type, default and choices. "
    "Point the YAML language server at it with a first line '# yaml-language-server: $schema=study.schema.json'.",
)
def _schema(args: argparse.Namespace) -> int:
    from harness.spec.jsonschema import study_schema

    text = json.dumps(study_schema(), indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(args.out)
    else:
        print(text, end="")
    return 0
