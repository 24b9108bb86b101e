"""Trial ids of every shipped study, as golden data: `python -m tests.golden_ids` rewrites
tests/golden/trial_ids.json (only on purpose: a changed id re-runs a finished trial for every user);
tests/test_golden_ids.py checks that loading and expanding each study gives exactly these ids."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "trial_ids.json"
STUDIES = sorted([*ROOT.glob("studies/*.yaml"), *ROOT.glob("docs/studies/*.yaml")])


def ids_of(path: Path) -> dict[str, list[str]]:
    """Ids of the study as written and under --smoke, in expansion order."""
    from harness.spec import expand, load_study, smoke

    study = load_study(path)
    return {"full": [t.trial_id for t in expand(study)], "smoke": [t.trial_id for t in expand(smoke(study))]}


def current() -> dict[str, dict[str, list[str]]]:
    return {str(p.relative_to(ROOT)): ids_of(p) for p in STUDIES}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}", file=sys.stderr)
