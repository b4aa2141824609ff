"""Data-parallel MET training with ``torch.distributed``: N processes, one replica each.

Every process (rank) trains the same network from the same initial weights on batches of its own
(an effective batch of N x ``batch_size``); after each backward pass the gradients are averaged
over all ranks in one all-reduce, so the replicas stay identical, step for step. Rank 0's clock
decides when to validate and when the time budget is spent, so all ranks take the same steps.
The backend is gloo on the CPU and NCCL on CUDA; the checkpoint is the ordinary one.

Three ways in: ``sbml-met train ... --nproc N`` (processes on this machine),
:func:`train_distributed` from Python, or ``torchrun --nproc-per-node N -m sbml_met train ...``
(and torchrun's multi-node options) - :func:`init_from_env` joins the group torchrun describes.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist

from ..errors import InvalidArgumentError


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_device() -> torch.device:
    """This rank's device: its own GPU (by local rank) where CUDA is there, else the CPU."""
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.get_rank())) % torch.cuda.device_count())
    return torch.device("cpu")


def backend_for(device: str | None) -> str:
    """NCCL for CUDA training, gloo for the CPU."""
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    return "nccl" if cuda and dist.is_nccl_available() else "gloo"


def init_from_env(device: str | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT); True when this process is one of several."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device))
    return True


def broadcast_parameters(net: torch.nn.Module) -> None:
    """Give every rank rank 0's weights."""
    for tensor in net.state_dict().values():
        dist.broadcast(tensor, src=0)


def average_gradients(net: torch.nn.Module) -> None:
    """Replace each gradient by its mean over all ranks (one all-reduce of all of them)."""
    params = [p for p in net.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def replicas_agree(net: torch.nn.Module) -> bool:
    """Whether every rank holds bit-identical weights (elementwise max over ranks == min)."""
    flat = torch.cat([t.detach().reshape(-1).double() for t in net.state_dict().values()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))


def agree(stop: bool, check: bool, frac: float) -> tuple[bool, bool, float]:
    """Rank 0's (stop, validate now, fraction of the budget spent), for every rank."""
    flags = torch.tensor([float(stop), float(check), float(frac)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        flags = flags.to(distributed_device())
    dist.broadcast(flags, src=0)
    stop_, check_, frac_ = flags.tolist()
    return bool(stop_), bool(check_), frac_


def train_distributed(network, box: Mapping[str, tuple[float, float]], times, nproc: int = 2,
                      **options: Any):
    """``train(network, box, times, **options)`` on ``nproc`` processes of this machine
    (data parallel); returns the trained MET (rank 0's, identical to the others')."""
    from .checkpoint import load

    if int(nproc) < 1:
        raise InvalidArgumentError(f"nproc must be >= 1, got {nproc}")
    if int(nproc) == 1:
        from .train import train

        return train(network, box, times, **options)
    with tempfile.TemporaryDirectory(prefix="sbml-met-ddp-") as folder:
        out = Path(folder) / "rank0.met"
        args = (int(nproc), _free_port(), network, dict(box), tuple(times), options, str(out))
        torch.multiprocessing.start_processes(_rank_main, args=args, nprocs=int(nproc), join=True,
                                              start_method="spawn")
        return load(out, network)


def _rank_main(rank: int, nproc: int, port: int, network, box, times, options, out: str) -> None:
    """One rank of :func:`train_distributed` (a spawned process)."""
    from .train import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc))
    dist.init_process_group(backend_for(options.get("device")), rank=rank, world_size=nproc)
    try:
        met = train(network, box, times, **options)
        if rank == 0:
            met.save(out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
