"""Ray: the default backend. Each trial is one task with the study's per-trial resources.

No address: an embedded local Ray sized to this machine. `--address`/`RAY_ADDRESS`: join a
running cluster (started with `ray up cluster.yaml` or `ray start`). Results travel back to
the driver as task return values, and the driver writes them, so workers need no shared
filesystem. System failures (a node or worker dies) are retried by Ray (`max_retries`); a
trial's own exception is already a failed row inside `run_trial`, so it is never retried.
A trial with `resources.workers: N > 1` is a Ray Train TorchTrainer of N workers
(harness/backends/ray_train.py), retried through its FailureConfig from the trial's checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from harness.backends import Backend, failed_output, require_gpu_if_asked
from harness.errors import StudyError

if TYPE_CHECKING:
    from harness.spec import Study, Trial
    from harness.store import ResultsDir, TrialOutput

MAX_RETRIES = 3  # re-runs after a node/worker death; a trial's own exception is never retried
PROBE_TIMEOUT_S = 5.0  # per TCP connect to the head; a head that answers does so in milliseconds
PROBE_TRIES = 3  # a head under load may miss one SYN; 3 x 5 s stays inside the promised ~30 s
DEFAULT_PORT = 6379  # `ray start --head` default GCS port
GCS_TIMEOUT_S = 20.0  # a head answers in < 1 s (measured: 0.9 s with the interpreter start); ray.init would retry for minutes

# Run in a child so a port that accepts but is no Ray head cannot hang the driver: ray.init (and
# GcsClient) keep retrying such an address (measured: still waiting after 3.5 min). Ray's own
# `ray health-check` connects the same way. Only a definite "no GCS" answer refuses the run.
# The child times itself from after `import ray` (seconds on a loaded machine), so a slow start never
# reads as a silent head.
_GCS_CHECK = """
import os, sys, threading
try:
    import ray
    from ray._private import services
    def silent():
        print("NOANSWER", flush=True)
        os._exit(0)
    threading.Timer(float(sys.argv[2]), silent).start()
    address = services.canonicalize_bootstrap_address_or_die(sys.argv[1])
    client = ray._raylet.GcsClient(address=address)
    client.internal_kv_get(b"session_name", namespace=b"session")
except (ImportError, AttributeError, TypeError) as e:  # Ray's internals moved: cannot check, let ray.init try
    print("UNKNOWN", e)
except Exception as e:
    print("NOGCS", str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
else:
    print("OK", flush=True)
os._exit(0)
"""


def _run(trial: Trial) -> TrialOutput:
    from harness.trial import run_trial

    return run_trial(trial)


def cluster_address(address: str | None) -> str | None:
    """--address, else $RAY_ADDRESS, else None (an embedded Ray). 'auto' is refused: it may
    attach to someone else's cluster on a shared machine."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "auto":
        raise StudyError(
            "address 'auto' may attach to someone else's cluster",
            key="--address",
            fix="give the head's explicit host:port, e.g. --address 10.0.0.5:6379",
        )
    return address


def host_port(address: str) -> tuple[str, int]:
    """'10.0.0.5:6379', 'ray://head:10001', '[::1]:6379', 'head' (default port)."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or "]" in port:  # no port given (or an IPv6 literal without one)
        host, port = rest, str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(
            f"cannot read the Ray address {address!r}",
            key="--address",
            fix="host:port of the head's GCS, e.g. --address 10.0.0.5:6379",
        )
    return host, int(port)


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S, tries: int = PROBE_TRIES) -> None:
    """A TCP connect to the head before ray.init: ray.init keeps retrying an address where nothing
    listens for many minutes (measured: 10 min for 127.0.0.1:1); this answers in seconds."""
    host, port = host_port(address)
    why = ""
    for _ in range(tries):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return
        except socket.gaierror as e:
            why = f"unknown host ({e.strerror})"
            break  # a name that does not resolve will not resolve on a retry
        except ConnectionRefusedError:
            why = "connection refused (nothing listens on that port)"
            break
        except OSError as e:  # timeout, no route to host, network unreachable
            why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
    raise StudyError(
        f"cannot reach the Ray cluster at {address}: {why}",
        key="--address",
        fix="check that 'ray start --head' runs there and the port is right (or drop --address for a local Ray)",
    )


def check_gcs(address: str, timeout_s: float | None = None) -> None:
    """Something listens at `address`: is it a Ray head (its GCS answers)? Ray Client addresses
    (ray://) are served by another process and are left to ray.init."""
    if "://" in address:
        return
    timeout_s = GCS_TIMEOUT_S if timeout_s is None else timeout_s
    why = ""
    try:
        p = subprocess.run(
            [sys.executable, "-c", _GCS_CHECK, address, str(timeout_s)], capture_output=True, text=True, timeout=timeout_s + 120
        )  # backstop only: the child times the check itself
        answer = (p.stdout.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        answer = "NOANSWER"
    if answer.startswith("NOGCS"):
        why = f"no Ray head answers there ({answer[6:]})"
    elif answer == "NOANSWER":
        why = f"something listens there but no Ray head answered in {timeout_s:.0f} s"
    if why:
        raise StudyError(
            f"cannot connect to the Ray cluster at {address}: {why}",
            key="--address",
            fix="give the head's GCS address (the one 'ray start --head' prints, default port 6379)",
        )


def _init(address: str | None) -> bool:
    """Connect or start Ray; True when this call started it (so we also shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    # Ray 2.60: a plain ray.init() writes ~/.ray/auth_token, after which clusters started on this
    # machine switch to token auth and drivers without it fail; pin the mode unless the user set it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cluster_address(address)
    kwargs = dict(log_to_driver=False, logging_level="ERROR")
    if address is None:
        # Ray runs workers at nice +15 (so its own daemons stay responsive); on a laptop shared with
        # anything else that starves the trials and their throughput numbers read 3-5x low. Trials run at
        # the driver's niceness instead, as they do on the local and SLURM backends. A cluster's workers
        # follow its own `ray start` settings.
        kwargs.update(include_dashboard=False, num_cpus=os.cpu_count(), _system_config={"worker_niceness": 0})
    # ray.init installs its own SIGTERM handler (sys.exit inside whatever C++ call is running: exit 134
    # with a stack dump); keep the driver's, which ends a run like Ctrl-C
    term = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise StudyError(
            f"cannot connect to the Ray cluster at {address}: {e}",
            key="--address",
            fix="check that 'ray start --head' runs there and the port is right (or drop --address for a local Ray)",
        ) from None
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)
    return True


def _check_feasible(trials: Sequence[Trial], embedded: bool) -> None:
    """A task needing more than any node has pends forever: refuse it on an embedded Ray."""
    import ray

    total = ray.cluster_resources()
    for t in trials:
        workers = t.resources.get("workers", 1)  # Ray Train places them on any nodes; the total must exist
        need = {"CPU": t.resources["cpus"] * workers, "GPU": t.resources["gpus"] * workers}
        for res, amount in need.items():
            if amount > total.get(res, 0) and embedded:
                raise StudyError(
                    f"a trial needs {amount} {res} but this machine's Ray has {total.get(res, 0)}",
                    key=f"resources.{res.lower()}s",
                    fix="lower resources in the study or run on a cluster with --address",
                )


class RayBackend(Backend):
    name = "ray"
    requires = "ray"
    install = "pip install 'ray[default]'"

    def preflight(self, study: Study, flags: dict | None = None, *, address: str | None = None) -> None:
        address = cluster_address(address)  # 'auto' refused before the results directory is touched
        self.require()
        if address is None:
            require_gpu_if_asked(study)  # the embedded Ray runs the trials on this machine
        else:
            probe(address)  # seconds, not the minutes ray.init retries an address where nothing listens
            check_gcs(address)

    def execute(
        self, trials: Sequence[Trial], *, rd: ResultsDir, address: str | None = None, **_: object
    ) -> Iterator[TrialOutput]:
        import ray

        from harness.backends import ray_train

        if not trials:
            return
        started = _init(address)
        embedded = started and not cluster_address(address)
        remote = ray.remote(_run)
        pending: dict = {}
        try:
            _check_feasible(trials, embedded)
            for t in trials:
                if t.resources.get("workers", 1) > 1:  # the TorchTrainer's fit, in a zero-CPU task; it retries itself
                    fit = ray.remote(ray_train.run).options(num_cpus=0, max_retries=0, name=f"ray train {t.trial_id}")
                    pending[fit.remote(t, str(rd.ray_checkpoint(t.trial_id)), str(rd.ray_train), MAX_RETRIES)] = t
                    continue
                ref = remote.options(
                    num_cpus=t.resources["cpus"],
                    num_gpus=t.resources["gpus"],
                    max_retries=MAX_RETRIES,
                    retry_exceptions=False,
                    name=f"trial {t.trial_id} {t.label}",
                ).remote(t)
                pending[ref] = t
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    trial = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:  # worker/node died more often than MAX_RETRIES
                        yield failed_output(trial, e)
        finally:
            # Ctrl-C, SIGTERM or an error: stop the rest; what finished is already stored. An embedded Ray
            # is shut down below, which ends its workers; force-cancelling there raced a task whose reply
            # was in flight and crashed Ray's core worker once in CI ("Tried to complete task that was not
            # pending", exit 1 instead of 143). On a cluster the tasks must be cancelled: they outlive us.
            for ref in pending if not embedded else ():
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


BACKEND = RayBackend()
