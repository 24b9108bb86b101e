"""The training run's checkpoint file (SLURM preemption/timeouts; see harness/train.py): the
complete training state (model, optimizer, sampler and augmentation generators, global RNG, and the
trainer's progress: step, losses, curve, clocks) saved atomically every N steps and restored in
place by the run that finds it. A branched (WSD) run starts from a trunk's checkpoint here.

Below harness/train.py: it knows the state's pieces, not the loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.data import EpochSampler


@dataclass(frozen=True)
class Checkpoint:
    """The run's checkpoint file, saved every `every` steps (never at the last: the run is done;
    `every` 0: only where the trainer says, a wsd trunk at its branch points)."""

    path: Path
    every: int

    @classmethod
    def of(cls, path: Path | None, every: int) -> Checkpoint | None:
        """None (nothing written, nothing resumed) without a path; every 0: resumed from, written only
        at a wsd trunk's branch points and halving rungs."""
        return cls(Path(path), max(every, 0)) if path is not None else None

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def save(
        self,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        sampler: EpochSampler,
        aug_gen: torch.Generator,
        progress: dict,
    ) -> None:
        """Everything the next step depends on, written to a temporary name and renamed (never half a file)."""
        state = dict(
            progress,
            model=model.state_dict(),
            opt=opt.state_dict(),
            sampler_rng=sampler.g.get_state(),
            sampler_perm=sampler.perm,
            sampler_pos=sampler.pos,
            aug_rng=aug_gen.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        )
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except BaseException:  # a signal (preemption) mid-save leaves the previous checkpoint intact
            tmp.unlink(missing_ok=True)
            raise

    def load(
        self,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        sampler: EpochSampler,
        aug_gen: torch.Generator,
        device: torch.device,
        total: int,
    ) -> dict | None:
        """Restore in place and return the progress; None (start from step 0) if it belongs to another budget."""
        state = torch.load(self.path, map_location="cpu", weights_only=False)  # our own file: tensors + plain lists
        if state.get("total") != total:
            return None
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sampler.g.set_state(state["sampler_rng"])
        sampler.perm, sampler.pos = state["sampler_perm"], state["sampler_pos"]
        aug_gen.set_state(state["aug_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return state
