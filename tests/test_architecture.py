"""The structure of harness/ (tests/architecture.py reads it from the source): no import cycle,
function-level imports included, neither between modules nor between subpackages; no use of another
module's underscore names; no module over 600 lines and no function over 80."""

from __future__ import annotations

import pytest

from tests import architecture

FINDINGS = architecture.findings()


@pytest.mark.parametrize("kind", sorted(FINDINGS))
def test_no_findings(kind: str) -> None:
    assert FINDINGS[kind] == [], f"{kind}:\n" + "\n".join(FINDINGS[kind])


def test_the_checker_sees_a_cycle_a_private_name_and_a_long_function(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "harness"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from harness import b\n    return b._hidden\n")
    (pkg / "b.py").write_text("from harness.a import f\n_hidden = 1\n" + "def g():\n" + "    x = 1\n" * 81)
    monkeypatch.setattr(architecture, "ROOT", tmp_path)
    monkeypatch.setattr(architecture, "PACKAGE", pkg)
    found = architecture.findings()
    assert found["cycles"] == ["harness.a <-> harness.b"]
    assert found["private"] == ["harness/a.py:3: harness.b._hidden"]
    assert found["long_functions"] == ["harness.b.g (line 3): 82 lines"]
