"""Ray: the default backend. Each trial is one task with the study's per-trial resources.

No address: an embedded local Ray sized to this machine. `--address`/`RAY_ADDRESS`: join a
running cluster (started with `ray up cluster.yaml` or `ray start`). Results travel back to
the driver as task return values, and the driver writes them, so workers need no shared
filesystem. System failures (a node or worker dies) are retried by Ray (`max_retries`); a
trial's own exception is already a failed row inside `run_trial`, so it is never retried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from harness.backends import failed_output
from harness.errors import StudyError
from harness.spec import Trial
from harness.store import TrialOutput

MAX_RETRIES = 3  # re-runs after a node/worker death; a trial's own exception is never retried


def _run(trial: Trial) -> TrialOutput:
    from harness.trial import run_trial

    return run_trial(trial)


def _init(address: str | None) -> bool:
    """Connect or start Ray; True when this call started it (so we also shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    # Ray 2.60: a plain ray.init() writes ~/.ray/auth_token, after which clusters started on this
    # machine switch to token auth and drivers without it fail; pin the mode unless the user set it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "auto":
        raise StudyError("address 'auto' may attach to someone else's cluster", key="--address",
                         fix="give the head's explicit host:port, e.g. --address 10.0.0.5:6379")
    kwargs = dict(log_to_driver=False, logging_level="ERROR")
    if address is None:
        # Ray runs workers at nice +15 (so its own daemons stay responsive); on a laptop shared with
        # anything else that starves the trials and their throughput numbers read 3-5x low. Trials run at
        # the driver's niceness instead, as they do on the local and SLURM backends. A cluster's workers
        # follow its own `ray start` settings.
        kwargs.update(include_dashboard=False, num_cpus=os.cpu_count(), _system_config={"worker_niceness": 0})
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise StudyError(f"cannot connect to the Ray cluster at {address}: {e}", key="--address",
                         fix="check that 'ray start --head' runs there and the port is right (or drop --address for a local Ray)") from None
    return True


def _check_feasible(trials: Sequence[Trial], embedded: bool) -> None:
    """A task needing more than any node has pends forever: refuse it on an embedded Ray."""
    import ray

    total = ray.cluster_resources()
    for t in trials:
        need = {"CPU": t.resources["cpus"], "GPU": t.resources["gpus"]}
        for res, amount in need.items():
            if amount > total.get(res, 0) and embedded:
                raise StudyError(f"a trial needs {amount} {res} but this machine's Ray has {total.get(res, 0)}",
                                 key=f"resources.{res.lower()}s",
                                 fix="lower resources in the study or run on a cluster with --address")


def execute(trials: Sequence[Trial], *, address: str | None = None, **_: object) -> Iterator[TrialOutput]:
    import ray

    if not trials:
        return
    started = _init(address)
    embedded = started and not (address or os.environ.get("RAY_ADDRESS"))
    remote = ray.remote(_run)
    pending: dict = {}
    try:
        _check_feasible(trials, embedded)
        for t in trials:
            ref = remote.options(num_cpus=t.resources["cpus"], num_gpus=t.resources["gpus"],
                                 max_retries=MAX_RETRIES, retry_exceptions=False,
                                 name=f"trial {t.trial_id} {t.label}").remote(t)
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
        for ref in pending:  # Ctrl-C or an error: stop the rest; what finished is already stored
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
