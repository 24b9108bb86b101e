"""A real multi-node Ray cluster: join it with --address, and survive a node dying mid-study;
and the cluster launcher configs (cluster.yaml, cluster-local.yaml) pass Ray's own validation.

Needs the cluster from scripts/ray_up.sh (head 127.0.0.2, node 127.0.0.3; .ci/run starts it and
sets HARNESS_TEST_RAY_ADDRESS and HARNESS_TEST_RAY_DIR). The node-death test adds one more node
of its own (127.0.0.4) and kill -9s that node's raylet while a trial runs there, so the shared
cluster stays intact for other tests. Everything this file starts it stops by PID; it never
runs `ray stop` and never uses address="auto".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from harness import store
from tests.conftest import write_study
from tests.test_crash import assert_exactly_once, start_driver, stop_session, wait_for

ADDRESS = os.environ.get("HARNESS_TEST_RAY_ADDRESS")
RAY_DIR = os.environ.get("HARNESS_TEST_RAY_DIR", "/tmp/ray_ci")
EXTRA_IP = "127.0.0.4"
RAY = str(Path(sys.executable).parent / "ray")

REPO = Path(__file__).resolve().parent.parent
needs_cluster = pytest.mark.skipif(
    not ADDRESS, reason="no Ray cluster: HARNESS_TEST_RAY_ADDRESS is set by .ci/run (scripts/ray_up.sh)"
)


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_cluster_launcher_configs_pass_rays_own_validation(name: str) -> None:
    """What `ray up` checks before it launches anything: defaults filled in, then Ray's JSON schema."""
    import copy

    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / name).read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    assert config["file_mounts"] == {"~/harness": "."}
    assert any("pip install -q -e ~/harness" in c for c in config["setup_commands"])
    if raw["provider"]["type"] == "aws":
        gpu = config["available_node_types"]["gpu_worker"]
        assert gpu["node_config"]["InstanceType"].startswith(("g", "p")) and gpu["max_workers"] >= 1


def alive_nodes() -> int:
    """Alive nodes, asked in a short-lived process (a driver in the test process would pin the cluster)."""
    code = (
        "import ray, sys; ray.init(address=sys.argv[1], _node_ip_address=sys.argv[1].split(':')[0], "
        "log_to_driver=False, logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    p = subprocess.run([sys.executable, "-c", code, ADDRESS], capture_output=True, text=True, timeout=120)
    return int(p.stdout.split()[-1]) if p.returncode == 0 and p.stdout.split() else -1


@pytest.mark.cluster
@needs_cluster
def test_study_joins_the_cluster_and_failing_trial_is_a_row(tmp_path: Path) -> None:
    """--address joins the running cluster; a trial's own exception is a failed row (not a retry)."""
    bad = write_study(tmp_path, name="boom_cluster", models="[vit@xs, resnet@xs]", data_sizes="[32]", lr="1.0e+30")
    p = start_driver([str(bad), "--address", ADDRESS, "--results", str(tmp_path / "res"), "--no-report"], tmp_path / "log")
    try:
        assert p.wait(180) == 1, (tmp_path / "log").read_text()
    finally:
        stop_session(p.pid)
    df = store.read(tmp_path / "res" / "boom_cluster")
    assert len(df) == 2 and (df["status"] == "failed").all()
    assert df["error"].str.startswith("NonFiniteLoss: loss became").all()


@pytest.mark.cluster
@needs_cluster
def test_node_death_mid_study_every_trial_once(tmp_path: Path) -> None:
    before = alive_nodes()
    assert before >= 2, "the CI cluster (head + node2) is not up"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    node = subprocess.Popen(
        [
            RAY,
            "start",
            "--block",
            f"--address={ADDRESS}",
            f"--node-ip-address={EXTRA_IP}",
            "--num-cpus=1",
            '--resources={"extra": 1}',
            "--disable-usage-stats",
            f"--temp-dir={RAY_DIR}/tmp",
            "--object-store-memory=200000000",
        ],
        stdout=open(tmp_path / "node.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    driver = None
    try:
        wait_for(lambda: alive_nodes() == before + 1, 120, "the extra node to register", every=1)
        raylet = wait_for(
            lambda: next((c for c in psutil.Process(node.pid).children() if "raylet" in c.name()), None),
            30,
            "the extra node's raylet",
        )
        # 8 trials of a few seconds each over 3 one-CPU nodes
        study = write_study(tmp_path, name="nodedeath", models="[resnet@xs, vit@xs]", data_sizes="[32, 64, 128, 256]", steps=60)
        out_dir = tmp_path / "res" / "nodedeath"
        driver = start_driver(
            [str(study), "--address", ADDRESS, "--results", str(tmp_path / "res"), "--no-report"], tmp_path / "driver.log"
        )

        def trials_on_extra_node() -> set[str]:  # its workers busy with a trial are titled "ray::trial <id> ..."
            out = set()
            for w in raylet.children():
                with _gone():
                    title = " ".join(w.cmdline())
                    if title.startswith("ray::trial "):
                        out.add(title.split()[1])
            return out

        wait_for(lambda: store.trial_files(out_dir), 180, "the first row")
        seen = trials_on_extra_node()
        # kill the node the moment a trial starts there, so that trial is surely mid-run
        victim = wait_for(
            lambda: next(iter(trials_on_extra_node() - seen), None), 180, "a trial starting on the extra node", every=0.05
        )
        workers = [w.pid for w in raylet.children()]
        killed_at = time.time()
        os.kill(raylet.pid, signal.SIGKILL)
        assert driver.wait(300) == 0, (tmp_path / "driver.log").read_text()
        assert_exactly_once(study, out_dir)
        row = store.read(out_dir).set_index("trial_id").loc[victim]
        # the victim's stored run started after the kill (started_at has milliseconds): Ray re-ran it elsewhere
        assert datetime.fromisoformat(row["started_at"]).timestamp() > killed_at
        finished = (out_dir / "trials" / f"{victim}.parquet").stat().st_mtime
        record = {"victim": victim, "node_death_to_retried_trial_done_s": round(finished - killed_at, 1)}
        (tmp_path / "measured.json").write_text(json.dumps(record))
        print(f"node death -> retried trial stored: {record}")
        wait_for(lambda: not any(psutil.pid_exists(w) for w in workers), 60, "the dead node's workers to exit")
    finally:
        if driver is not None:
            stop_session(driver.pid)
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                pass
        stop_session(node.pid)


class _gone:
    """Ignore processes that exit while we look at them."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied))
