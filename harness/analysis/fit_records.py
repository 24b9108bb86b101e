"""The records a fit produces: one group's fit, a crossover between two groups, the report; and its text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.fmt import clean, fmt_x
from harness.analysis.forms import TEXT
from harness.analysis.lawfit import LawFit, describe_params
from harness.analysis.laws import derived, form_text


def law_text(form: str, n_x: int) -> str:
    return form_text(n_x) if form == "power" else TEXT[form]


@dataclass
class GroupFit:
    """The fit of one group (a family, a model, or "all")."""

    group: str
    y: str  # the column asked for
    target: str  # what was fitted: the column, or "1 - column" for accuracies
    x: list[str]
    n: int
    n_dropped: int
    law: LawFit | None
    x_range: tuple[float, float] | None  # of the first x, over the rows used
    holdout: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # family, image_size, params if constant
    forms: list[dict[str, Any]] = field(default_factory=list)  # --form auto: each form's extrapolation error
    warnings: list[dict[str, str]] = field(default_factory=list)  # fitwarnings.py: {code, message}
    asymptotic: dict[str, Any] | None = None  # exponent over the largest x (fitwarnings.asymptotic)

    @property
    def form(self) -> str:
        return self.law.form if self.law else "power"

    def to_json(self) -> dict[str, Any]:
        law = self.law
        return clean(
            {
                "group": self.group,
                "form": self.form,
                "form_text": law_text(self.form, len(self.x)),
                "forms": self.forms or None,
                "warnings": self.warnings,
                "asymptotic": self.asymptotic,
                "y": self.y,
                "target": self.target,
                "x": self.x,
                "n": self.n,
                "n_dropped": self.n_dropped,
                "params": law.params if law else None,
                "derived": derived(law.params) if law else None,
                "ci95": {k: list(v) for k, v in law.ci95.items()} if law else None,
                "se": law.se if law else None,
                "n_boot": law.n_boot if law else 0,
                "warm_refits": law.warm_refits if law else 0,  # of n_boot: refitted from the optimum alone (settled)
                "rmse_log": law.rmse_log if law else None,
                "x_range": self.x_range,
                "holdout": self.holdout,
                "notes": self.notes,
            }
        )


@dataclass
class Crossover:
    """Where two groups' fitted curves cross (lower y is better), or that they do not."""

    winner: str  # the group with lower y above the crossing (or throughout, if none)
    other: str
    x_name: str
    x: float | None
    searched: tuple[float, float]
    ci95: tuple[float, float] | None = None
    frac_boot: float | None = None  # share of bootstrap pairs that cross in `searched`
    measured: tuple[float, float] | None = None  # the x range both groups were measured on

    @property
    def extrapolated(self) -> bool:
        """A crossing outside the measured range is a prediction of the fitted laws, not a finding."""
        return self.x is not None and self.measured is not None and not (self.measured[0] <= self.x <= self.measured[1])

    def text(self) -> str:
        lo, hi = (fmt_x(v) for v in self.searched)
        share = f"crossing in {self.frac_boot:.0%} of bootstrap pairs" if self.frac_boot is not None else ""
        if self.x is None:
            tail = f" ({share})" if share else ""
            return (
                f"{self.winner} and {self.other} do not cross for {self.x_name} in "
                f"[{lo}, {hi}]; {self.winner} is lower throughout{tail}"
            )
        ci = f"95% CI {fmt_x(self.ci95[0])}–{fmt_x(self.ci95[1])}" if self.ci95 else ""
        extra = "; ".join(p for p in (ci, share) if p)
        where = ""
        if self.extrapolated:
            assert self.measured is not None
            where = f"; EXTRAPOLATED: outside the measured {fmt_x(self.measured[0])}–{fmt_x(self.measured[1])}"
        return f"{self.winner} overtakes {self.other} at {self.x_name} ≈ {fmt_x(self.x)}" + (
            f" ({extra}{where})" if extra else (f" ({where[2:]})" if where else "")
        )

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "winner": self.winner,
                "other": self.other,
                "x": self.x_name,
                "at": self.x,
                "searched": list(self.searched),
                "ci95": list(self.ci95) if self.ci95 else None,
                "frac_boot": self.frac_boot,
                "extrapolated": self.extrapolated,
                "text": self.text(),
            }
        )


@dataclass
class FitReport:
    y: str
    target: str
    x: list[str]
    by: str | None
    bootstrap: int
    fits: list[GroupFit]
    crossovers: list[Crossover]
    dropped: dict[str, int]  # reason -> rows
    n_rows: int
    notes: list[str] = field(default_factory=list)
    form: str = "power"  # as requested: a form of forms.py or "auto"

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "y": self.y,
                "target": self.target,
                "x": self.x,
                "by": self.by,
                "bootstrap": self.bootstrap,
                "form": self.form,
                "n_rows": self.n_rows,
                "dropped": self.dropped,
                "notes": self.notes,
                "fits": [f.to_json() for f in self.fits],
                "crossovers": [c.to_json() for c in self.crossovers],
            }
        )

    def summary(self) -> str:
        return "\n".join(summary_lines(self)) + "\n"

    def to_dict(self) -> dict[str, Any]:  # the name every object of the Python API answers to
        return self.to_json()

    def fitted(self) -> bool:
        """Whether any group got a law (`harness fit` exits 1 when none did)."""
        return any(f.law is not None for f in self.fits)

    def __str__(self) -> str:
        return self.summary()


PairFilter = Callable[[GroupFit, GroupFit], bool]


def summary_lines(rep: FitReport) -> list[str]:
    xs = " and ".join(rep.x)
    per = "curve" if rep.by == "_group" else rep.by  # internal grouping column of fit_view
    law = "the form each group extrapolates best (--form auto)" if rep.form == "auto" else law_text(rep.form, len(rep.x))
    lines = [f"fit: {rep.target} = {law}  (x = {xs}" + (f", per {per}" if per else "") + ")"]
    lines += [f"note: {n}" for n in rep.notes]
    used = rep.n_rows - sum(rep.dropped.values())
    drop = ", ".join(f"{v} {k}" for k, v in rep.dropped.items()) or "none"
    lines.append(f"rows: {used} of {rep.n_rows} used; dropped: {drop}")
    if rep.bootstrap:
        lines.append(
            f"intervals: 95% percentile, bootstrap ({rep.bootstrap} resamples, multi-start refits): points, then "
            "the seeds within each drawn point where an x has several, else trials"
        )
    for f in rep.fits:
        lines.append("")
        lines += group_lines(f)
    if rep.crossovers:
        lines += ["", "crossovers (lower is better):"]
        lines += [f"  {c.text()}" for c in rep.crossovers]
    return lines


def group_lines(f: GroupFit) -> list[str]:
    head = f"[{f.group}] n={f.n}" + (f" ({f.n_dropped} dropped)" if f.n_dropped else "")
    if f.x_range:
        head += f", {f.x[0]} {fmt_x(f.x_range[0])}–{fmt_x(f.x_range[1])}"
    out = [head]
    if f.forms:
        out.append("  forms (fitted without the largest x, error on them):")
        for r in f.forms:
            err = "not identified" if r["extrapolation_error"] is None else f"{r['extrapolation_error']:.1%}"
            mark = " <- chosen" if r["form"] == f.form else ""
            out.append(f"    {r['form']:<11} {err}{mark}")
    if f.law:
        if f.form != "power":
            out.append(f"  form: {f.form}: {law_text(f.form, len(f.x))}")
        out.append(f"  {describe_params(f.law)}")
        out.append(f"  rmse(log) = {f.law.rmse_log:.4f}")
    if f.holdout:
        h = f.holdout
        held = ", ".join(fmt_x(v) for v in h["held_out_x"])
        out.append(
            f"  holdout ({f.x[0]} = {held}; fitted on {h['n_train']} rows): "
            f"log-RMSE {h['log_rmse']:.3f}, worst relative error {h['max_rel_error']:.1%}"
        )
    out += [f"  warning [{w['code']}]: {w['message']}" for w in f.warnings]
    out += [f"  note: {n}" for n in f.notes]
    return out
