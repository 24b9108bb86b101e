"""The README and the docs cannot drift from the code: the results-column lists of the docs' results
reference (docs/reference/results.md, moved there from the README) are store.COLUMNS and
store.CURVE_COLUMNS (same names, same order), and the README's Commands table names every verb that
`harness --help` lists (and no verb that does not exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import store
from harness.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "results.md"


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _column_list(name: str) -> list[str]:
    """The columns listed between `<!-- columns: NAME -->` and `<!-- /columns -->`: each line is a
    bullet `- label: `col, col, ...`` (no backticks in the label), notes after the list allowed."""
    m = re.search(rf"<!-- columns: {re.escape(name)} -->\n(.*?)<!-- /columns -->", RESULTS_PAGE.read_text(encoding="utf-8"), re.S)
    assert m, f"docs/reference/results.md has no '<!-- columns: {name} -->' block"
    out = []
    for line in m.group(1).splitlines():
        if not line.strip():
            continue
        span = re.match(r"- [^`]*: `([^`]*)`", line)
        assert span, f"not a '- label: `col, col`' bullet in the {name} block: {line!r}"
        out += [c.strip() for c in span.group(1).split(",")]
    return out


@pytest.mark.parametrize(
    "name, columns", [("store.COLUMNS", list(store.COLUMNS)), ("store.CURVE_COLUMNS", list(store.CURVE_COLUMNS))]
)
def test_readme_column_lists_match_the_store(name: str, columns: list[str]) -> None:
    listed = _column_list(name)
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({c for c in listed if listed.count(c) > 1})}"
    missing, unknown = [c for c in columns if c not in listed], [c for c in listed if c not in columns]
    assert not missing and not unknown, f"docs/reference/results.md {name}: missing {missing}, not in the code {unknown}"
    assert listed == columns, "same columns, another order: list them in the order of harness/store.py"


def _help_verbs() -> set[str]:
    m = re.search(r"\{([a-z_,-]+)\}", build_parser(["--help"]).format_help())
    assert m, "harness --help lists no verbs"
    return set(m.group(1).split(","))


def _commands_table_verbs() -> set[str]:
    """Verbs in the first column of the table under '## Commands': `harness VERB ...` or a bare `VERB`."""
    m = re.search(r"^## Commands\n(.*?)^## ", _text(), re.S | re.M)
    assert m, "README.md has no '## Commands' section"
    rows = [line for line in m.group(1).splitlines() if line.startswith("|")][2:]  # skip header and separator
    assert rows, "the Commands section has no table"
    verbs = set()
    for row in rows:
        first = re.split(r"(?<!\\)\|", row)[1]
        for span in re.findall(r"`([^`]*)`", first):
            words = span.split()
            if words[0] == "harness" and len(words) > 1:
                verbs.add(words[1])
            elif len(words) == 1 and re.fullmatch(r"[a-z]+", words[0]):
                verbs.add(words[0])
    return verbs


def test_every_verb_of_harness_help_is_in_the_commands_table() -> None:
    verbs, documented = _help_verbs(), _commands_table_verbs()
    assert {"run", "status", "compact"} <= verbs  # the parse found the verbs
    assert not verbs - documented, f"verbs missing from README's Commands table: {sorted(verbs - documented)}"
    assert not documented - verbs, f"README's Commands table names verbs harness does not have: {sorted(documented - verbs)}"
