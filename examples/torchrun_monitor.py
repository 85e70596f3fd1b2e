"""The Monitor in a data-parallel loop: DDP or FSDP2, on CPU processes that talk over gloo.

    torchrun --nproc_per_node 2 examples/torchrun_monitor.py             # DDP, a healthy rate
    torchrun --nproc_per_node 2 examples/torchrun_monitor.py --fsdp      # FSDP2 (fully_shard on a CPU mesh)
    torchrun --nproc_per_node 2 examples/torchrun_monitor.py --lr 2      # a rate far too high: the Monitor says so
    python examples/torchrun_monitor.py                                  # one process, the same code

Every rank runs the same loop on its own share of each batch; the Monitor combines the ranks'
statistics at each recorded step (one collective) and only rank 0 judges and prints. The model
is a teacher-student classification: a random 2-layer teacher labels Gaussian inputs, a 6-layer
ReLU student learns them.
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainability import Monitor, initialize


def data(step: int, rank: int, world: int, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the step's global batch (the same global batch on every rank)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(batch, 32, generator=g)
    teacher = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(32, 64, generator=teacher), torch.randn(64, 8, generator=teacher)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    return x.chunk(world)[rank], y.chunk(world)[rank]


def student() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank
    layers: list[nn.Module] = []
    width = 32
    for _ in range(6):
        layers += [nn.Linear(width, 128), nn.ReLU()]
        width = 128
    model = nn.Sequential(*layers, nn.Linear(width, 8))
    initialize(model, seed=0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdp", action="store_true", help="shard with FSDP2 instead of replicating with DDP")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    torch.set_num_threads(1)  # two processes on two cores
    timeout = datetime.timedelta(seconds=60)
    if "RANK" in os.environ:  # launched by torchrun: its environment says where rank 0 listens
        dist.init_process_group("gloo", timeout=timeout)
    else:  # one process, without torchrun
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()

    model = student()
    if args.fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))  # always an explicit CPU mesh (a default one tries CUDA)
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        trained = fully_shard(model, mesh=mesh)
    else:
        trained = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    with Monitor(trained, optimizer) as monitor:
        for step in range(args.steps):
            x, y = data(step, rank, world)
            loss = F.cross_entropy(trained(x), y)
            loss.backward()
            for finding in monitor.step(loss):  # findings come back on rank 0 only
                print(f"[rank {rank}] step {finding.step}: [{finding.severity}] {finding.kind}\n    {finding.message}\n    fix: {finding.fix}")
            optimizer.step()
            optimizer.zero_grad()
            diverged = torch.tensor(float(not torch.isfinite(loss)))
            dist.all_reduce(diverged)  # every rank stops together, or the others wait for it forever
            if diverged:
                break
    if rank == 0:
        figures = monitor.figures
        print(f"{'FSDP2' if args.fsdp else 'DDP'} on {world} process(es): {monitor.steps_done} steps, loss {figures['loss']:.3f}, "
              f"largest update {figures['update_ratio_max']:.2g} of the weights; {len(monitor.findings)} finding(s)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
