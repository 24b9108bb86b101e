"""One trial as a tracker sees it (`Record`) and the `Sink` base the trackers implement.

Below `export` (the dispatcher, which reads results and picks sinks) and the sinks in
`export_mlflow` and `export_tensorboard`, which import only this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

# curve columns that are not values at a step
_CURVE_KEYS = {"study", "trial_id", "step"}
# the config's numbers are params (config_json), not measurements
_NOT_METRICS = {"schema_version", "image_size", "data_size", "seed", "epochs", "batch_size", "lr"}
# facts of the machine, not measurements of the trial: tags (strings), never metrics
_HARDWARE = {"threads", "device_count", "cpu_count", "niceness"}
_NOT_TAGS = {"config_json", "variant"}  # variant: the analysis' label across studies, not provenance
_CONFIG_COLUMNS = ("family", "size", "model", "image_size", "data_size", "seed", "steps", "epochs", "batch_size", "lr", "dataset")
ERROR_CHARS = 5000  # a traceback's tail is enough; MLflow tags hold 8000 characters

# ----------------------------------------------------------------------------- records


@dataclass
class Record:
    """One trial as a tracker sees it."""

    study: str
    trial_id: str
    status: str
    name: str  # readable: "resnet@xs n=1000 32px seed=0"
    params: dict[str, object]  # resolved config, dotted keys; values str, int, float or bool
    metrics: dict[str, float]  # the row's finite measured numbers
    tags: dict[str, str]  # provenance: device, versions, git sha, host, study hash, status, error ...
    curve: list[dict[str, float]] = field(default_factory=list)  # {"step": s, col: value, ...} in step order
    started_ms: int | None = None
    end_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stamp(self) -> str:
        """Identity of the stored result: a re-run trial (a failed one retried) gets a new one."""
        started = self.tags.get("started_at")
        if started:
            return f"{self.status}@{started}"
        blob = json.dumps([self.status, self.metrics, self.params], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def final_step(self) -> int:
        steps = [int(p["step"]) for p in self.curve]
        own = self.metrics.get("steps")
        return max([*steps, int(own) if own is not None else 0])

    def point_ms(self, point: dict[str, float]) -> int | None:
        """Wall time of a curve point: start + its elapsed seconds (None when the start is unknown)."""
        if self.started_ms is None:
            return None
        return self.started_ms + int(1000 * point.get("elapsed_s", 0.0))


def record(row: dict, curve: list[dict]) -> Record:
    """A stored row (plain or pandas values) and its curve points as a Record."""
    row = {k: _plain(v) for k, v in row.items()}
    metrics = {k: float(v) for k, v in row.items() if _number(v) and k not in _NOT_METRICS | _HARDWARE}
    tags = {
        k: _tag(v)
        for k, v in row.items()
        if (isinstance(v, (str, bool)) or (k in _HARDWARE and _number(v))) and k not in _NOT_TAGS and v != ""
    }
    for k in ("error", "traceback"):  # the tail says where it failed
        if k in tags:
            tags[k] = tags[k][-ERROR_CHARS:]
    started = _ms(row.get("started_at"))
    duration = row.get("duration_s")
    return Record(
        study=str(row.get("study") or ""),
        trial_id=str(row.get("trial_id") or ""),
        status=str(row.get("status") or "ok"),
        name=readable_name(row),
        params=config_params(row),
        metrics=metrics,
        tags=tags,
        curve=_points(curve),
        started_ms=started,
        end_ms=started + int(1000 * duration) if started is not None and _number(duration) else started,
    )


def readable_name(row: dict) -> str:
    model = row.get("model") or "@".join(str(row[k]) for k in ("family", "size") if row.get(k)) or "trial"
    parts = [str(model)]
    for key, fmt in (("data_size", "n={}"), ("image_size", "{}px"), ("seed", "seed={}")):
        if row.get(key) is not None:
            parts.append(fmt.format(row[key]))
    return " ".join(parts)


def config_params(row: dict) -> dict[str, object]:
    """The resolved config (config_json) as dotted keys; rows without it: their config columns."""
    try:
        cfg = json.loads(row["config_json"]) if isinstance(row.get("config_json"), str) else None
    except ValueError:
        cfg = None
    if not isinstance(cfg, dict):
        return {k: _param(row[k]) for k in _CONFIG_COLUMNS if row.get(k) is not None}
    out: dict[str, object] = {}

    def walk(prefix: str, v: object) -> None:
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), sub)
        else:
            out[prefix] = _param(v)

    walk("", cfg)
    return out


def _points(curve: list[dict]) -> list[dict[str, float]]:
    points = []
    for i, p in enumerate(curve):
        step = _plain(p.get("step"))
        point = {"step": float(step) if _number(step) else float(i)}
        point.update({k: float(v) for k, v in ((k, _plain(v)) for k, v in p.items()) if k not in _CURVE_KEYS and _number(v)})
        points.append(point)
    return sorted(points, key=lambda p: p["step"])


def _plain(v: object) -> object:
    """pandas/numpy scalars as Python values; NA and NaN as None."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _tag(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _param(v: object) -> object:
    if v is None or isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return v if isinstance(v, (str, bool, int, float)) else str(v)


def _ms(text: object) -> int | None:
    """started_at (ISO 8601; UTC when it names no zone) as epoch milliseconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


# ----------------------------------------------------------------------------- sinks


class Sink:
    """Where records go. `log` returns "created", "updated" (a re-run replaced the old export) or "unchanged"."""

    label = ""

    def log(self, rec: Record) -> str:
        raise NotImplementedError

    def live(self, rec: Record) -> None:
        """A trial still training: log the points of `rec.curve` not logged yet (its final `log` replaces them)."""

    def finish(self, trial_id: str) -> None:
        """The trial's live logging is over (close what `live` opened)."""

    def prepare(self, study: str) -> None:
        """Before many records of one study (a sink may fetch what is there at once)."""

    def close(self) -> None:
        pass
