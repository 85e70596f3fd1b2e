"""Work for two CPU ranks on gloo (spawned by tests/test_distributed.py): each case runs on every
rank and returns what that rank saw; the test compares ranks with each other and with one
process on the whole batch. A short process-group timeout makes a hang fail fast."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainability import Monitor, diagnose

STEPS = 3
GLOBAL_BATCH = 32


class Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append((tag, value, step))


def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(GLOBAL_BATCH, 20, generator=g), torch.randint(0, 3, (GLOBAL_BATCH,), generator=g)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():  # 8 units that fire on one or two samples of the first batch: dead on one half, alive on the other
        pre = model[2](model[1](model[0](batches(0)[0]))) - model[2].bias
        model[2].bias[:8] = -pre[:, :8].quantile(0.95, dim=0)
    return model


def shard(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return t.chunk(world)[rank]


def train(model: nn.Module, monitored: nn.Module, rank: int, world: int, writer: Writer | None = None) -> Monitor:
    """SGD steps on each rank's share of the global batches, under a Monitor recording every step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(monitored, optimizer, every=1, writer=writer)
    with monitor:
        for step in range(STEPS):
            x, y = batches(step)
            loss = F.cross_entropy(monitored(shard(x, rank, world)), shard(y, rank, world))
            loss.backward()
            monitor.step(loss)
            optimizer.step()
            optimizer.zero_grad()
    return monitor


# -- the cases, run on every rank ---------------------------------------------------------------------
def ddp_monitor(rank: int, world: int) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = mlp()
    writer = Writer()
    monitor = train(model, DistributedDataParallel(model), rank, world, writer)
    return {"rows": monitor.rows, "findings": [f.to_dict() for f in monitor.findings], "writes": len(writer.calls)}


def fsdp_monitor(rank: int, world: int) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    # uneven shards (33 and 7 rows over 2 ranks) and an empty one (the head's single row)
    model = nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 7), nn.Tanh(), nn.Linear(7, 1))
    mesh = init_device_mesh("cpu", (world,))
    for layer in (model[0], model[2], model[4]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    reference: list[dict[str, float]] = []
    with Monitor(model, optimizer, every=1) as monitor:
        for step in range(STEPS):
            x, _ = batches(step)
            x = shard(x, rank, world)
            loss = F.mse_loss(model(x).squeeze(-1), x[:, 0])
            loss.backward()
            monitor.step(loss)
            reference.append({
                **{f"{i}:weight_grad_norm": float(model[i].weight.grad.full_tensor().norm()) for i in (0, 2, 4)},
                **{f"{i}:weight_std": float(model[i].weight.full_tensor().std(correction=0)) for i in (0, 2, 4)},
            })  # fmt: skip
            optimizer.step()
            optimizer.zero_grad()
    return {"rows": monitor.rows, "reference": reference, "shards": [int(model[4].weight.to_local().numel())]}


class Branchy(nn.Module):
    """A layer that runs on rank 0 only (conditional computation): the other rank has no statistics for it."""

    def __init__(self, use_extra: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(20, 16), nn.ReLU())
        self.extra = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)
        self.use_extra = use_extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.use_extra:
            h = h + torch.relu(self.extra(h))
        return self.head(h)


def skipped_layer(rank: int, world: int) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = Branchy(use_extra=rank == 0)
    monitor = train(model, DistributedDataParallel(model, find_unused_parameters=True), rank, world)
    return {"rows": monitor.rows, "steps": monitor.steps_done}


def ddp_diagnose(rank: int, world: int) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    x, y = batches(0)
    report = diagnose(DistributedDataParallel(mlp()), shard(x, rank, world), shard(y, rank, world))
    return {"report": report.to_dict(), "layers": [vars(s) for s in report.layers], "loss": report.loss}


def fsdp_diagnose(rank: int, world: int) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = mlp()
    mesh = init_device_mesh("cpu", (world,))
    for i in (0, 2, 4):
        fully_shard(model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    x, y = batches(0)
    report = diagnose(model, shard(x, rank, world), shard(y, rank, world))
    return {"report": report.to_dict(), "layers": [vars(s) for s in report.layers], "loss": report.loss}


CASES: dict[str, Callable[[int, int], dict[str, Any]]] = {
    "ddp_monitor": ddp_monitor, "fsdp_monitor": fsdp_monitor, "skipped_layer": skipped_layer,
    "ddp_diagnose": ddp_diagnose, "fsdp_diagnose": fsdp_diagnose,
}  # fmt: skip


def entry(rank: int, name: str, port: int, world: int, folder: str) -> None:
    """One rank: join the group (gloo, 30 s timeout), run the case, save what it returned."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))
    try:
        result = CASES[name](rank, world)
        torch.save(result, os.path.join(folder, f"{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
