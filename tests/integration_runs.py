"""Training runs under the Hugging Face Trainer, Lightning and Accelerate, for
tests/test_integrations.py: in the test's own process, or as a script, one process per rank
(``python tests/integration_runs.py <run> <out> [healthy|broken]``, ranks from the environment, as
``torchrun`` sets them). Each rank writes what it saw to ``<out>/<run>.<rank>.json`` and prints
what the callback prints.

"Broken" is a learning rate far too high (1.0 for AdamW on a BERT): the loss goes up instead of
down (checked from the Trainer's own logs); for Lightning, the weights of one layer multiplied by
1000 mid-run (its gradient jumps by orders of magnitude; tests/test_lightning.py checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))  # architectures.py, when run as a script

from architectures import bert  # noqa: E402

HEALTHY_LR, BROKEN_LR = 5e-4, 1.0
STEPS = 16
TIMEOUT = 30  # seconds a rank waits in a collective before the process group gives up


class Tokens(torch.utils.data.Dataset):
    """A toy task: is token 4 at position 3? Token ids and labels, as a tokenizer gives them."""

    def __init__(self, n: int = 512, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 120, (n, 12), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        self.ids[self.labels == 1, 3] = 4

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


# -- Hugging Face Trainer --------------------------------------------------------------------------
@contextlib.contextmanager
def reporting_to_a_recorder() -> Iterator[list[dict[str, Any]]]:
    """A ``report_to`` integration named "recorder", registered where the Trainer looks its
    ``report_to`` names up while the block runs: the logs its ``on_log`` was handed, on the
    world's process zero only, as TensorBoard's, W&B's and MLflow's write."""
    from transformers import TrainerCallback
    from transformers.integrations import integration_utils

    received: list[dict[str, Any]] = []

    class Recorder(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                received.append(dict(logs))

    integration_utils.INTEGRATION_TO_CALLBACK["recorder"] = Recorder
    try:
        yield received
    finally:
        del integration_utils.INTEGRATION_TO_CALLBACK["recorder"]


def hf_run(out: Path, broken: bool, *, every: int = 1) -> dict[str, Any]:
    """A small BERT trained by the Trainer with the callback, reporting to the recorder."""
    import transformers
    from transformers import Trainer, TrainingArguments

    from trainability.integrations.huggingface import TrainabilityCallback

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    callback = TrainabilityCallback(every=every)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # gloo for torchrun's ranks; one process: none
    args = TrainingArguments(
        output_dir=str(out / "hf"), per_device_train_batch_size=16, max_steps=STEPS,
        learning_rate=BROKEN_LR if broken else HEALTHY_LR, logging_steps=4, report_to=["recorder"], use_cpu=True,
        ddp_backend="gloo" if distributed else None, ddp_timeout=TIMEOUT, ddp_find_unused_parameters=False,
        disable_tqdm=True, save_strategy="no", dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    with reporting_to_a_recorder() as received:
        trainer = Trainer(model=bert(layers=2), args=args, train_dataset=Tokens(), callbacks=[callback])
        trainer.train()
    return {
        "rank": args.process_index,
        "world_size": args.world_size,
        "wrapper": type(trainer.model_wrapped).__name__,
        "log_history": trainer.state.log_history,
        "received": received,
        "findings": [f.to_dict() for f in callback.monitor.findings],
        "recorded": sorted({step for step, *_ in callback.monitor.rows}),
        "optimizer": callback.monitor.optimizer.name,  # what the Monitor reads: the Trainer's, unwrapped
    }


# -- Lightning ---------------------------------------------------------------------------------------
def lightning_run(out: Path, devices: int) -> dict[str, Any]:
    """An MLP whose fourth layer is blown up at batch 22, under ``strategy="ddp"``."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.strategies import DDPStrategy

    from trainability import mlp
    from trainability.integrations.lightning import TrainabilityCallback

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(20, 3, depth=4, width=32)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 22:
                with torch.no_grad():
                    self.net[4].weight.mul_(1000.0)
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=1e-4)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64 * 40 * devices, 20), torch.randint(0, 3, (64 * 40 * devices,)))
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    callback = TrainabilityCallback(every=5)
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=TIMEOUT)) if devices > 1 else "auto"
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=devices, strategy=strategy,
                         logger=CSVLogger(str(out), name="lightning", version=0), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])  # fmt: skip
    module = Classifier()
    trainer.fit(module, loader)
    return {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "findings": [f.to_dict() for f in callback.monitor.findings],
        "recorded": sorted({step for step, *_ in callback.monitor.rows}),
    }


# -- Accelerate --------------------------------------------------------------------------------------
def accelerate_run(out: Path, broken: bool, mixed_precision: str = "no") -> dict[str, Any]:
    """``accelerator.prepare`` and a plain loop, with the Monitor on the prepared model."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from trainability import Monitor

    ranks = int(os.environ.get("WORLD_SIZE", "1"))  # a short collective timeout where ranks wait on each other
    handlers = [InitProcessGroupKwargs(backend="gloo", timeout=timedelta(seconds=TIMEOUT))] if ranks > 1 else []
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision, kwargs_handlers=handlers)
    torch.manual_seed(0)
    model = bert(layers=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=BROKEN_LR if broken else HEALTHY_LR)
    loader = torch.utils.data.DataLoader(Tokens(), batch_size=16)
    prepared, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    with Monitor(prepared, optimizer, every=1) as monitor:
        for step, batch in enumerate(loader):
            output = prepared(**batch)
            accelerator.backward(output.loss)
            monitor.step(output.loss)
            optimizer.step()
            optimizer.zero_grad()
            if step + 1 == STEPS:
                break
    return {
        "rank": accelerator.process_index,
        "world_size": accelerator.num_processes,
        "wrapper": type(prepared).__name__,
        "forward_replaced": "forward" in vars(model),  # mixed precision: accelerate's autocast around forward
        "optimizer": [type(optimizer).__name__, monitor.optimizer.name],
        "findings": [f.to_dict() for f in monitor.findings],
        "layers": sorted({layer for _, layer, *_ in monitor.rows}),
    }


def main(argv: list[str]) -> None:
    run, out = argv[0], Path(argv[1])
    torch.set_num_threads(1)
    if run == "hf":
        result = hf_run(out, broken=argv[2] == "broken")
    elif run == "lightning":
        result = lightning_run(out, devices=int(argv[2]))
    elif run == "accelerate":
        result = accelerate_run(out, broken=argv[2] == "broken")
    else:
        raise ValueError(f"unknown run {run!r}: hf, lightning or accelerate")
    (out / f"{run}.{result['rank']}.json").write_text(json.dumps(result))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Ranks leave together and close the process group themselves: a gloo group still open
        # at interpreter exit can abort a rank ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1:])
