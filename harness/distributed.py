"""The distributed context of one training run: this process's rank, the world size, and the few
collective operations the trainer needs (issue 25: data-parallel trials).

A multi-worker trial is N processes that each call `run_trial` on the same `Trial`; the engine
that started them (Ray Train, SLURM tasks through submitit, the local launcher) has already
initialised torch.distributed's default process group, and `current()` reads rank and world size
from it. Without a process group the context is the single process of every other trial
(`SINGLE`), and every method below is the identity, so one-worker results stay those of before.

How N ranks train the same model as one worker with the same global batch:
- every rank draws the same global batch from the same seeded permutation and keeps its share
  (`share`: a contiguous slice, batch_size / N samples), and the augmentation draws for the whole
  global batch are made on every rank, each keeping its share (data.Batcher.share);
- DDP averages the gradients, so the update is that of the global batch's mean loss; BatchNorm
  normalises with the global batch's statistics: timm's SyncBatchNorm conversion on CUDA, and on CPU
  (where torch's SyncBatchNorm refuses to run) the same sums all-reduced over gloo by a
  differentiable all-reduce (`_cpu_sync_batchnorm`), so a BatchNorm model matches one worker too;
- recorded losses are the mean over ranks (`mean`), read back at the same points as before.
Only rank 0 writes (the checkpoint, the row, the curve); every rank resumes from that checkpoint.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

DEFAULT_TIMEOUT_S = 300  # a collective waiting this long for a dead rank fails instead of hanging


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (its first dimension)."""
        if self.world == 1:
            return batch
        n = len(batch) // self.world
        return batch[self.rank * n : (self.rank + 1) * n]

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of `t` over ranks (one all-reduce; `t` itself on one worker)."""
        if self.world == 1:
            return t
        t = t.clone()
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t / self.world

    def wrap(self, net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the training steps call: DDP over `net` (SyncBatchNorm first on CUDA, converted
        in place so `net` and its owner see the synchronised layers); `net` itself on one worker."""
        if self.world == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            _sync_batchnorm_in_place(net)
            return DistributedDataParallel(net, device_ids=[device.index or 0])
        for m in net.modules():
            if isinstance(m, BATCHNORMS):
                m.__class__ = _synced_class(type(m))  # same parameters, buffers and state_dict keys
        return DistributedDataParallel(net)

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()


SINGLE = Context()


def current() -> Context:
    """The context of this process: from the default process group when one is initialised."""
    if tdist.is_available() and tdist.is_initialized():
        return Context(tdist.get_rank(), tdist.get_world_size())
    return SINGLE


def timeout() -> dt.timedelta:
    """How long a collective waits for a rank (HARNESS_DDP_TIMEOUT_S seconds, default 300)."""
    return dt.timedelta(seconds=float(os.environ.get("HARNESS_DDP_TIMEOUT_S", DEFAULT_TIMEOUT_S)))


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(rank: int, world: int, address: str, port: int, device: torch.device) -> Context:
    """Join the trial's process group (gloo on CPU, NCCL on CUDA) with the collective timeout."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group(
        backend_for(device), init_method=f"tcp://{address}:{port}", rank=rank, world_size=world, timeout=timeout()
    )
    return current()


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


BATCHNORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)  # timm's BatchNormAct2d included
_SYNCED: dict[type, type] = {}


def _sync_batchnorm_in_place(net: torch.nn.Module) -> None:
    """CUDA: timm's conversion (it keeps the activation of timm's BatchNormAct layers; torch's drops it)."""
    from timm.layers import convert_sync_batchnorm

    for name, child in net.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(net, name, converted)


def _synced_class(cls: type) -> type:
    """`cls` whose training forward normalises with the statistics of every rank's share."""
    if cls not in _SYNCED:

        def forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return cls.forward(self, x)
            y = _cpu_sync_batchnorm(self, x)
            if hasattr(self, "act") and hasattr(self, "drop"):  # timm's BatchNormAct2d: norm, drop, act
                y = self.act(self.drop(y))
            return y

        _SYNCED[cls] = type(f"Synced{cls.__name__}", (cls,), {"forward": forward})
    return _SYNCED[cls]


class SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: each rank's input feeds every rank's loss."""

    @staticmethod
    def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        return grad


def _cpu_sync_batchnorm(bn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Batch norm over the global batch: per-channel sums, sums of squares and counts all-reduced
    (differentiably: the backward all-reduces their gradients, as torch's SyncBatchNorm does)."""
    c, dims = x.shape[1], [0, *range(2, x.dim())]
    local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / c)])
    stats = SumOverRanks.apply(local)
    n = stats[-1]
    mean = stats[:c] / n
    var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)  # biased, as batch norm normalises
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.item()
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)  # unbiased, as torch keeps it
    shape = [1, c] + [1] * (x.dim() - 2)
    y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    return y
