"""Records as TensorBoard runs: DIR/<study>/<model>-n<data>-<px>px-s<seed>-<trial_id>/ per trial.

Each run holds the learning curve (`curve/test_acc`, `curve/train_loss` ... at `step`), the row's
numbers (`final/test_acc` ... at the last step) and an HParams session (the resolved config as
hparams, status ok/failed), so TensorBoard's HParams view lines the trials up. No experiment summary
is written: TensorBoard builds the columns from every run's session (a per-run summary would show
only the first run's keys when families differ in their shape keys).

A run directory is written whole in a temporary directory and renamed into place; `harness.json`
in it records the stored row it came from, so exporting again skips unchanged trials and replaces
re-run ones. A trial that trains with `tracking:` set writes its curve points live into its run
directory (without that file), and its stored row's run replaces them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from harness.analysis.export_records import Record, Sink
from harness.extras import require

MARKER = "harness.json"


def run_dir_name(rec: Record) -> str:
    """Readable and unique: `resnet@xs-n1000-32px-s0-<trial_id>`."""
    text = rec.name.replace(" n=", "-n").replace(" seed=", "-s").replace(" ", "-")
    return _safe(f"{text}-{rec.trial_id}")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9@._=+-]", "_", text).lstrip(".-") or "_"


class TensorboardSink(Sink):
    def __init__(self, root: str | Path, *, key: str = "--tensorboard") -> None:
        require("tensorboard", "tensorboard", key=key)
        self.root = Path(root)
        self.label = f"tensorboard {self.root}"
        self._live: dict[str, tuple[object, int]] = {}  # trial_id -> (its live SummaryWriter, points written)

    def run_dir(self, rec: Record) -> Path:
        return self.root / _safe(rec.study or "harness") / run_dir_name(rec)

    def log(self, rec: Record) -> str:
        dest = self.run_dir(rec)
        marker = {"trial_id": rec.trial_id, "stamp": rec.stamp}
        existed = dest.exists()
        try:
            if json.loads((dest / MARKER).read_text()) == marker:
                return "unchanged"
        except (OSError, ValueError):
            pass
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp makes 0700; a TensorBoard run by another user reads it
        try:
            _write_run(tmp, rec)
            (tmp / MARKER).write_text(json.dumps(marker))
            _swap(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return "updated" if existed else "created"

    def live(self, rec: Record) -> None:
        """`curve/<column>` scalars written into the trial's run directory as it trains (no marker:
        the stored row's `log` writes the run whole and swaps it in)."""
        from torch.utils.tensorboard import SummaryWriter

        w, sent = self._live.get(rec.trial_id, (None, 0))
        if w is None:
            dest = self.run_dir(rec)
            if dest.exists():  # an older result of this trial, which runs again
                shutil.rmtree(dest)
            w = SummaryWriter(log_dir=str(dest))
        for p in rec.curve[sent:]:
            wall = rec.point_ms(p)
            for k, v in p.items():
                if k != "step":
                    w.add_scalar(f"curve/{k}", v, int(p["step"]), walltime=wall / 1000 if wall else None)
        w.flush()
        self._live[rec.trial_id] = (w, len(rec.curve))

    def finish(self, trial_id: str) -> None:
        w, _ = self._live.pop(trial_id, (None, 0))
        if w is not None:
            w.close()

    def close(self) -> None:
        for trial_id in list(self._live):
            self.finish(trial_id)


def _swap(new: Path, dest: Path) -> None:
    """Put directory `new` at `dest`; an old `dest` is renamed aside first, then removed."""
    if not dest.exists():
        os.rename(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.rename(dest, old / "run")
    os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def _write_run(directory: Path, rec: Record) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=str(directory))
    try:
        for p in rec.curve:
            wall = rec.point_ms(p)
            for k, v in p.items():
                if k != "step":
                    w.add_scalar(f"curve/{k}", v, int(p["step"]), walltime=wall / 1000 if wall else None)
        end, step = rec.end_ms, rec.final_step
        for k, v in rec.metrics.items():
            w.add_scalar(f"final/{k}", v, step, walltime=end / 1000 if end else None)
        for summary in _hparams(rec):
            w.file_writer.add_summary(summary, walltime=(rec.started_ms or 0) / 1000 or None)
    finally:
        w.close()


def _hparams(rec: Record) -> list:
    """The HParams plugin's session start (hparams, group) and end (status) summaries."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=rec.trial_id, start_time_secs=(rec.started_ms or 0) / 1000)
    hp = {**rec.params, "status": rec.status, "model_name": rec.name.split(" ")[0]}
    for k, v in hp.items():
        if isinstance(v, bool):
            start.hparams[k].bool_value = v
        elif isinstance(v, (int, float)):
            start.hparams[k].number_value = float(v)
        else:
            start.hparams[k].string_value = str(v)
    status = api_pb2.STATUS_SUCCESS if rec.ok else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=(rec.end_ms or 0) / 1000)
    out = []
    for tag, content in (
        (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
    ):
        out.append(Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))]))
    return out
