"""Functions the launcher's tests run on spawned ranks. A rank imports the module its function lives
in; this one imports nothing, so a rank starts with torch alone (a test module's own imports, timm and
the profiler among them, cost each rank ~2.5 s more on 2 busy cores)."""

from __future__ import annotations


def fail_on_rank_1(ctx: object) -> str:
    if ctx.rank == 1:  # type: ignore[attr-defined]
        raise ValueError("rank 1 cannot")
    return "rank 0 done"
