"""The envelope over tuned training keys (`harness fit|table|plot --tune lr[,weight_decay]`).

A scaling law is fitted to the best each model can do at each point, not to one learning rate
picked for another size (Kaplan 2020, Hoffmann 2022: tune per point, fit the envelope). For each
point (family, model, data_size, image_size, seed, dataset, and any other training key that
varies but is not tuned) `envelope` keeps the one trial with the best validation metric over the
tuned keys, says which value won where, and warns when a winner is the smallest or largest value
tried there (the optimum may lie outside the sweep). Selection reads only validation columns:
choosing on the test split would report the maximum of noisy test numbers as if it were one.
The tuned values come from each row's `config_json` (its train section).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import StudyError, did_you_mean

METRICS = ("best_val_acc", "val_acc")  # in order of preference: the best checkpoint's, else the final one's
POINT = ("family", "model", "data_size", "image_size", "frames", "frame_stride", "seed", "dataset")


@dataclass
class Envelope:
    rows: pd.DataFrame  # one winning trial per point (failed trials never win)
    metric: str
    keys: list[str]
    winners: list[str] = field(default_factory=list)  # "vit@xs n=1000 28px seed 0: lr=0.001 (best_val_acc 0.812)"
    warnings: list[str] = field(default_factory=list)  # winners on the edge of the swept range

    def lines(self) -> list[str]:
        head = f"--tune {','.join(self.keys)}: best {self.metric} per point, {len(self.rows)} points"
        return [head, *(f"  {w}" for w in self.winners), *(f"warning: {w}" for w in self.warnings)]


def train_values(df: pd.DataFrame) -> pd.DataFrame:
    """One column per train key, read from each row's config_json (NaN where a row has none)."""
    parsed = []
    for text in df["config_json"] if "config_json" in df else [None] * len(df):
        try:
            parsed.append((json.loads(text) or {}).get("train", {}) if isinstance(text, str) else {})
        except ValueError:
            parsed.append({})
    frame = pd.DataFrame([{k: _scalar(v) for k, v in t.items()} for t in parsed], index=df.index)
    return frame


def _scalar(v: object) -> object:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def envelope(df: pd.DataFrame, keys: list[str]) -> Envelope:
    """The best-validation trial per point over `keys` (see the module docstring)."""
    keys = [k.removeprefix("train.") for k in keys]  # --tune train.lr reads as --tune lr
    if not keys:
        raise StudyError("--tune needs at least one training key", key="--tune", fix="e.g. --tune lr or --tune lr,weight_decay")
    metric = next((m for m in METRICS if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()), None)
    if metric is None:
        raise StudyError(
            "--tune selects on the validation split, and no trial has val_acc or best_val_acc",
            key="--tune",
            fix="run the study with train.val_size > 0 (a validation split carved from the training data)",
        )
    train = train_values(df)
    for k in keys:
        if k not in train:
            raise StudyError(f"no trial records the training key {k!r}", key="--tune", fix=did_you_mean(k, list(train.columns)))
    # pruned cells (successive halving) were tried too: they count for the sweep's range (a winner on its edge)
    # and for "of N tried", but only finished trials can win
    done = df["status"].isin(["ok", "pruned"]) if "status" in df else pd.Series(True, index=df.index)
    ok = df[done]
    can_win = (ok["status"] == "ok" if "status" in ok else True) & pd.to_numeric(ok[metric], errors="coerce").notna()
    t = train.loc[ok.index]
    # varied within a model but not tuned: part of the point (a per-family setting is already told apart by the model)
    by = ok["model"].astype(str) if "model" in ok else pd.Series("", index=ok.index)
    others = [k for k in t.columns if k not in keys and (t[k].astype(str).groupby(by).nunique() > 1).any()]
    point = [c for c in POINT if c in ok] + [f"train.{k}" for k in others]
    work = ok.assign(
        **{f"train.{k}": t[k].astype(str) for k in others},
        **{f"_tune_{k}": t[k] for k in keys},
        _metric=pd.to_numeric(ok[metric], errors="coerce").where(can_win),
    )
    chosen, winners, warnings, edges = [], [], [], []
    for pkey, g in work.groupby(point, sort=True, dropna=False):
        if g["_metric"].isna().all():  # nothing at this point finished (failed or all pruned): no winner
            continue
        best = g.loc[g["_metric"].idxmax()]
        chosen.append(best.name)
        label = _point_label(dict(zip(point, pkey if isinstance(pkey, tuple) else (pkey,))))
        won = ", ".join(f"{k}={_fmt(best[f'_tune_{k}'])}" for k in keys)
        pruned = int(g["_metric"].isna().sum())
        tried = f"{len(g)} tried, {pruned} pruned" if pruned else f"{len(g)} tried"
        winners.append(f"{label}: {won} ({metric} {best['_metric']:.4g} of {tried})")
        where = _point_label({k: v for k, v in zip(point, pkey if isinstance(pkey, tuple) else (pkey,)) if k != "seed"})
        at_edge = [w for k in keys for w in _edge(k, best[f"_tune_{k}"], g[f"_tune_{k}"], where)]
        edges.append(bool(at_edge))
        warnings += [w for w in at_edge if w not in warnings]
    rows = df.loc[chosen].copy()
    for k in keys:
        rows[k] = train.loc[chosen, k].to_numpy()
    rows["_tune_edge"] = edges  # the winner sits at the edge of its sweep (fits: `edge_winner`)
    rows["tuned"] = [", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, vals)) for vals in zip(*(rows[k] for k in keys))]
    if "variant" in rows:  # the tuned keys no longer tell configurations apart (harness/analysis/io.py)
        rows["variant"] = [
            ", ".join(p for p in str(v).split(", ") if not any(p.startswith(f"train.{k}=") for k in keys))
            for v in rows["variant"]
        ]
        if rows["variant"].nunique() <= 1:
            rows = rows.drop(columns="variant")
    return Envelope(rows, metric, list(keys), winners, warnings)


def _edge(key: str, won: object, tried: pd.Series, label: str) -> list[str]:
    values = sorted({v for v in tried if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
    if len(values) < 2 or not isinstance(won, (int, float)):
        return []
    for end, word in ((values[-1], "largest"), (values[0], "smallest")):
        if won == end:
            return [f"{key} {_fmt(won)} is the {word} tried for {label}: the optimum may lie beyond it"]
    return []


def _point_label(p: dict) -> str:
    parts = [str(p.get("model", p.get("family", "")))]
    if "data_size" in p:
        parts.append(f"at n={_fmt(p['data_size'])}")
    if "image_size" in p:
        parts.append(f"{_fmt(p['image_size'])}px")
    if "seed" in p:
        parts.append(f"seed {_fmt(p['seed'])}")
    parts += [f"{k}={v}" for k, v in p.items() if k.startswith("train.")]
    return " ".join(parts)


def _fmt(v: object) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
