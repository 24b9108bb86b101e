"""Records as MLflow runs: one run per trial, experiment = study name, keyed on the `trial_id` tag.

params: the resolved config (dotted keys); metrics: the row's numbers, logged at the trial's last
step with its end time, and the learning curve as step metrics (test_acc, train_loss, val_acc ...
at `step`, timed start + elapsed_s), so a metric's latest value is the row's final one; tags:
provenance (device, dtype, versions, git_sha, host, study_hash, status, trial_id, error ...).
A run already there with the same stored row (tag `harness.stamp`) is left alone; a trial re-run
since replaces it (the old run is deleted, not duplicated). A trial that trains with `tracking:`
set logs its curve points live into a run stamped `live`, which its stored row's run replaces.
"""

from __future__ import annotations

import os
import re
import time

from harness.analysis.export_records import Record, Sink
from harness.errors import StudyError, did_you_mean
from harness.extras import require

STAMP_TAG = "harness.stamp"
LIVE_STAMP = "live"  # a trial still training (harness.live): replaced by the stored row's run
_BATCH_TAGS = 100  # MLflow's per-request limits: 100 params or tags, 1000 entries in all
_BATCH_METRICS = 1000
_PARAM_CHARS = 6000  # MLflow's param value limit
_TAG_CHARS = 8000
# the tracking URI schemes MLflow takes (a database scheme may name its driver: postgresql+psycopg2)
SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc", "file")


class MlflowSink(Sink):
    def __init__(self, uri: str, *, key: str = "--mlflow") -> None:
        require("mlflow", "mlflow", key=key)
        # a tracking server that is down should cost seconds, not the client's minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per run on stdout otherwise
        from mlflow.tracking import MlflowClient

        self.uri, self.key = uri, key
        self.label = f"mlflow {uri}"
        check_uri(uri, key)
        try:
            self.client = MlflowClient(tracking_uri=uri)
        except Exception as e:  # noqa: BLE001 - an unusable URI (the file store refuses since MLflow 3.x, a bad scheme)
            first = str(e).strip().split(". ")[0][:300]
            raise StudyError(
                f"MLflow cannot use the tracking URI {uri!r}: {type(e).__name__}: {first}",
                key=key,
                fix="give a tracking server (http://HOST:PORT) or a database (sqlite:///mlflow.db)",
            ) from None
        self._experiments: dict[str, str] = {}
        self._index: dict[str, dict[str, list]] = {}  # experiment id -> trial_id -> active runs
        self._live: dict[str, tuple[str, int]] = {}  # trial_id -> (its live run, curve points logged)

    def experiment(self, study: str) -> str:
        if study not in self._experiments:
            exp = self.client.get_experiment_by_name(study)
            if exp is not None and exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)  # a deleted name cannot be created again
            self._experiments[study] = exp.experiment_id if exp is not None else self.client.create_experiment(study)
        return self._experiments[study]

    def runs_of(self, exp: str, trial_id: str) -> list:
        """Active runs of one trial: from the experiment index `prepare` built, else one search."""
        if exp in self._index:
            return self._index[exp].get(trial_id, [])
        from mlflow.entities import ViewType

        return self.client.search_runs(
            [exp], filter_string=f"tags.trial_id = '{_quote(trial_id)}'", run_view_type=ViewType.ACTIVE_ONLY, max_results=50
        )

    def prepare(self, study: str) -> None:
        """Fetch every run of the study's experiment at once (pages of 1000): an export of many
        trials then costs three requests per new trial and none per unchanged one."""
        from mlflow.entities import ViewType

        exp = self.experiment(study)
        by: dict[str, list] = {}
        token = None
        while True:
            page = self.client.search_runs([exp], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            for r in page:
                by.setdefault(r.data.tags.get("trial_id", ""), []).append(r)
            token = page.token
            if not token:
                break
        self._index[exp] = by

    def log(self, rec: Record) -> str:
        exp = self.experiment(rec.study or "harness")
        found = self.runs_of(exp, rec.trial_id)
        same = [r for r in found if r.data.tags.get(STAMP_TAG) == rec.stamp]
        if same:
            # two exports that once ran at the same time left 72 runs for 37 trials: keep one
            extra = [r for r in found if r is not same[0]]
            for r in extra:
                self.client.delete_run(r.info.run_id)
            self._index.get(exp, {})[rec.trial_id] = [same[0]]
            return "updated" if extra else "unchanged"
        for r in found:  # an older result of this trial (it was re-run): replaced, not duplicated
            self.client.delete_run(r.info.run_id)
        self._create(exp, rec)
        self._index.get(exp, {}).pop(rec.trial_id, None)
        return "updated" if found else "created"

    def live(self, rec: Record) -> None:
        """A run tagged `harness.stamp=live` (status running) gets each new curve point; the stored
        row's run replaces it (`log` deletes runs of other stamps), so nothing is logged twice."""
        from mlflow.entities import Metric, Param

        rid, sent = self._live.get(rec.trial_id, ("", 0))
        if not rid:
            exp = self.experiment(rec.study or "harness")
            for r in self.runs_of(exp, rec.trial_id):  # an older result of this trial, which runs again
                self.client.delete_run(r.info.run_id)
            self._index.get(exp, {}).pop(rec.trial_id, None)
            tags = {**rec.tags, "trial_id": rec.trial_id, "study": rec.study, "status": "running", STAMP_TAG: LIVE_STAMP}
            tags = {_key(k): str(v)[:_TAG_CHARS] for k, v in tags.items()}
            rid = self.client.create_run(exp, start_time=rec.started_ms, run_name=rec.name, tags=tags).info.run_id
            params = [Param(_key(k), str(v)[:_PARAM_CHARS]) for k, v in rec.params.items()]
            for i in range(0, len(params), _BATCH_TAGS):
                self.client.log_batch(rid, params=params[i : i + _BATCH_TAGS])
        now = int(time.time() * 1000)
        metrics = [
            Metric(_key(k), v, rec.point_ms(p) or now, int(p["step"]))
            for p in rec.curve[sent:]
            for k, v in p.items()
            if k != "step"
        ]
        for i in range(0, len(metrics), _BATCH_METRICS):
            self.client.log_batch(rid, metrics=metrics[i : i + _BATCH_METRICS])
        self._live[rec.trial_id] = (rid, len(rec.curve))

    def finish(self, trial_id: str) -> None:
        self._live.pop(trial_id, None)

    def _create(self, exp: str, rec: Record) -> None:
        from mlflow.entities import Metric, Param

        tags = {**rec.tags, "trial_id": rec.trial_id, "study": rec.study, "status": rec.status, STAMP_TAG: rec.stamp}
        tags = {_key(k): str(v)[:_TAG_CHARS] for k, v in tags.items()}
        run = self.client.create_run(exp, start_time=rec.started_ms, run_name=rec.name, tags=tags)
        rid = run.info.run_id
        try:
            params = [Param(_key(k), str(v)[:_PARAM_CHARS]) for k, v in rec.params.items()]
            now = int(time.time() * 1000)
            metrics = []
            end, step = rec.end_ms or now, rec.final_step
            for p in rec.curve:
                ts = rec.point_ms(p) or now
                # at the last step the row's value is the one logged (once): not the curve point's as well
                own = rec.metrics if int(p["step"]) == step else {}
                metrics += [Metric(_key(k), v, ts, int(p["step"])) for k, v in p.items() if k != "step" and k not in own]
            metrics += [Metric(_key(k), v, end, step) for k, v in rec.metrics.items()]
            # one request for most trials: at most 100 params and 1000 entries in all per batch
            while params or metrics:
                ps, params = params[:_BATCH_TAGS], params[_BATCH_TAGS:]
                ms, metrics = metrics[: _BATCH_METRICS - len(ps)], metrics[_BATCH_METRICS - len(ps) :]
                self.client.log_batch(rid, params=ps, metrics=ms)
            self.client.set_terminated(rid, status="FINISHED" if rec.ok else "FAILED", end_time=rec.end_ms)
        except BaseException:
            self.client.delete_run(rid)  # half a run would read as a result; the next export writes it whole
            raise


def check_uri(uri: str, key: str) -> None:
    """A scheme MLflow does not know ('htp://...': it said "Model registry functionality is
    unavailable"), and a sqlite store left half-created by an interrupted export (issue 27)."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme and scheme.split("+")[0] not in SCHEMES and not re.fullmatch(r"[a-z]", scheme):  # C:\ is a path
        raise StudyError(
            f"the tracking URI {uri!r} has the scheme '{scheme}://', which MLflow does not know",
            key=key,
            fix=f"{did_you_mean(scheme, SCHEMES)} (e.g. http://HOST:5000 or sqlite:///mlflow.db)",
        )
    if scheme == "sqlite":
        _check_sqlite(uri, key)


def _check_sqlite(uri: str, key: str) -> None:
    """MLflow creates its tables first and records the schema version (alembic_version) last: tables
    without a version are an export interrupted in between, and every later export fails on them."""
    import sqlite3

    path = uri.split("://", 1)[1].split("?")[0]
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db -> rel.db, sqlite:////abs -> /abs
    if not path or path == ":memory:" or not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = con.execute("SELECT version_num FROM alembic_version").fetchall() if "alembic_version" in tables else []
        finally:
            con.close()
    except sqlite3.Error as e:
        raise StudyError(
            f"{path} is not a readable sqlite database ({e})",
            key=key,
            fix="give another file (sqlite:///mlflow.db), or move this one away and export again",
        ) from None
    if tables and not version:
        raise StudyError(
            f"the MLflow database {path} is half-created: {len(tables)} tables but no schema version "
            "(an export was interrupted while MLflow created its tables)",
            key=key,
            fix=f"move it away (mv {path} {path}.broken) and run the same export again: every run is written again from the results",
        )


def _quote(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.@=-]*", text):
        raise StudyError(
            f"trial id {text!r} has characters MLflow's filter cannot take", fix="export rows written by harness run"
        )
    return text


def _key(k: str) -> str:
    """MLflow keys take letters, digits, '_', '-', '.', ' ', '/' and ':'; anything else becomes '_'."""
    return re.sub(r"[^A-Za-z0-9_\-. /:]", "_", k)
