"""Issue 27, `harness sql`: read-only and inside its results directory, whatever the query.

Each hostile command of the issue runs here against a tiny results directory; a snapshot of every
file under the test's directory (the working directory and HOME too) proves nothing was created and
no stored row changed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.store import ResultsDir
from tests.test_sql import write_study

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "results"
    write_study(root, "tiny")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return root


def snapshot(where: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(where.rglob("*")) if p.is_file()}


def sql(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def a_trial(results: Path) -> str:
    return sorted(ResultsDir(results / "tiny").membership())[0]


HOSTILE = [
    "COPY (SELECT * REPLACE (0.99 AS test_acc) FROM trials WHERE trial_id='{tid}') TO 'results/tiny/trials/{tid}.parquet' "
    "(FORMAT parquet)",
    "COPY (SELECT 1) TO 'elsewhere.csv'",
    "ATTACH 'elsewhere.db' AS e; CREATE TABLE e.t AS SELECT 1",
    "CREATE TABLE t AS SELECT 1",
    "CREATE OR REPLACE VIEW trials AS SELECT 0.99 AS test_acc",
    "INSTALL httpfs",
    "LOAD httpfs",
    "EXPORT DATABASE 'dump'",
    "SET enable_external_access = true; COPY (SELECT 1) TO 'x.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('*')",
    "SELECT * FROM read_parquet('results/tiny/trials/*.parquet')",
    "INSERT INTO trials SELECT * FROM trials",
    "SELECT 1; DELETE FROM trials",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_no_query_writes_a_file_or_reads_one(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture, query: str) -> None:
    before = snapshot(tmp_path)
    code, out, err = sql(capsys, str(results / "tiny"), query.format(tid=a_trial(results)))
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: harness sql"), err
    assert snapshot(tmp_path) == before
    assert not Path(os.path.expanduser("~/.duckdb")).exists()


def test_allow_files_reads_but_still_writes_nothing(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    before = snapshot(tmp_path)
    code, out, err = sql(capsys, str(results / "tiny"), "SELECT count(*) AS n FROM read_parquet('results/tiny/trials/*.parquet')",
                         "--allow-files", "--csv")  # fmt: skip
    assert code == 0 and out.splitlines() == ["n", "12"], err
    tid = a_trial(results)
    code, _, err = sql(capsys, str(results / "tiny"), f"COPY (SELECT 1) TO 'results/tiny/trials/{tid}.parquet'", "--allow-files")
    assert code == 2 and "only reads" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("dest", ["results/tiny/trials/{tid}.parquet", "results/tiny/x.parquet", "results/tiny/new/x.parquet"])
def test_parquet_output_inside_a_results_directory_is_refused(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture, dest: str
) -> None:
    before = snapshot(tmp_path)
    q = "SELECT * REPLACE ('failed' AS status) FROM trials"
    code, _, err = sql(capsys, str(results / "tiny"), q, "--parquet", dest.format(tid=a_trial(results)))
    assert code == 2 and "inside the results directory" in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
    code, _, err = sql(capsys, str(results), q, "--parquet", "results/out.parquet")  # under the root given
    assert code == 2 and snapshot(tmp_path) == before


def test_cell_text_is_not_emoji_or_markup(results: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = sql(capsys, str(results / "tiny"), "SELECT ':x: [bold]b[/bold]' AS s")
    assert code == 0 and ":x: [bold]b[/bold]" in out


@pytest.mark.parametrize("query", ["", ";", "  ;  ;"])
def test_an_empty_query_is_refused(results: Path, capsys: pytest.CaptureFixture, query: str) -> None:
    code, out, err = sql(capsys, str(results / "tiny"), query)
    assert code == 2 and "empty" in err and out == ""


def test_interval_json_and_union_csv_are_text(results: Path, capsys: pytest.CaptureFixture) -> None:
    q = "SELECT max(started_at::TIMESTAMP) - min(started_at::TIMESTAMP) AS span FROM trials"
    code, out, err = sql(capsys, str(results / "tiny"), q, "--json")
    assert code == 0 and '"span"' in out, err
    code, out, err = sql(capsys, str(results / "tiny"), "SELECT union_value(k := 1)::UNION(k INT, s VARCHAR) AS u", "--csv")
    assert code == 0 and out.splitlines() == ["u", "1"], err


def test_parquet_to_an_unwritable_path_is_one_line(results: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = sql(capsys, str(results / "tiny"), "SELECT 1 AS a", "--parquet", "/proc/x.parquet")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot write the output" in err


def cli(results: Path, *argv: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness", "sql", str(results / "tiny"), *argv]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300, env=env)


def test_broken_pipe_and_full_disk_are_one_line(results: Path) -> None:
    q = "SELECT * FROM range(200000)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = f"{sys.executable} -m harness sql {results / 'tiny'} '{q}' --csv | head -1"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300, env=env)
    assert p.stdout == "range\n" and p.stderr == "", p.stderr
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            p = cli(results, "SELECT 1 AS a", "--csv", stdout=full)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "No space left" in p.stderr, p.stderr


LONG = "SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) = 7"  # hours of work
INTERRUPTED = "interrupted: the query was stopped, nothing written"


class Spy:
    """The connection harness sql opens, with a hook before the query and every interrupt counted."""

    def __init__(self, con: object, before_sql: object = None) -> None:
        self.con, self.before_sql, self.interrupts, self.querying = con, before_sql, threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.con, name)

    def sql(self, query: str) -> object:
        if self.before_sql is not None:
            self.before_sql(self)
        self.querying.set()  # (registering the views reports progress too)
        return self.con.sql(query)

    def interrupt(self) -> None:
        self.con.interrupt()
        self.interrupts.set()


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in this process for the test, as at a terminal. A pytest started in
    the background by a non-interactive shell inherits SIGINT ignored, and Python then installs no handler:
    the signal these tests send would be dropped and the query run to its end."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def spy_on_connect(monkeypatch: pytest.MonkeyPatch, before_sql: object = None) -> list[Spy]:
    from harness.analysis import sql as sqlmod

    real, made = sqlmod._connect, []

    def connect(duckdb: object) -> Spy:
        con = real(duckdb)
        # progress tracking on (before harness locks the configuration), so the test can see it execute
        for setting in ("enable_progress_bar = true", "enable_progress_bar_print = false", "progress_bar_time = 0"):
            con.execute(f"SET {setting}")
        made.append(Spy(con, before_sql))
        return made[-1]

    monkeypatch.setattr(sqlmod, "_connect", connect)
    return made


def test_ctrl_c_stops_a_long_query(
    results: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, ctrl_c_raises: None
) -> None:
    """A query that would run for hours; SIGINT once DuckDB is executing it: exit 130, one line, no traceback.
    (It used to fail now and then with ResourceInUseException: an interrupted `Thread.join` on CPython 3.11
    marks a running thread stopped, and the connection was closed under the query; see `_interruptible`.)"""
    made = spy_on_connect(monkeypatch)

    def interrupt_once_executing() -> None:
        while not (made and made[0].querying.is_set() and made[0].query_progress() >= 0):  # -1 until it executes
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_executing, daemon=True).start()
    code, out, err = sql(capsys, str(results / "tiny"), LONG)
    assert code == 130 and err.strip() == INTERRUPTED


def test_ctrl_c_before_duckdb_starts_still_stops_the_query(
    results: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, ctrl_c_raises: None
) -> None:
    """SIGINT handled (and the idle connection interrupted) just before DuckDB begins the query, whose start
    clears the interrupt flag: harness sql must interrupt again until the query stops. A watchdog stops a
    lost query after 60 s and fails the test."""
    fired = threading.Event()

    def before_sql(spy: Spy) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        assert spy.interrupts.wait(60)  # the main thread has handled Ctrl-C and interrupted the idle connection

        def watchdog() -> None:
            if not stopped.wait(60):
                fired.set()
                spy.con.interrupt()

        threading.Thread(target=watchdog, daemon=True).start()

    stopped = threading.Event()
    spy_on_connect(monkeypatch, before_sql)
    try:
        code, _, err = sql(capsys, str(results / "tiny"), LONG)
    finally:
        stopped.set()
    assert not fired.is_set(), "the interrupt was lost: the query ran on until the watchdog stopped it"
    assert code == 130 and err.strip() == INTERRUPTED
