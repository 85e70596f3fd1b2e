"""Models as the user hands them: wrapped for data parallelism, sharded, or compiled.

``DistributedDataParallel`` (and ``DataParallel``, DeepSpeed's engine) keep the user's model as
``.module``; ``torch.compile`` keeps it as ``._orig_mod``; Hugging Face Accelerate's ``prepare``
returns one of these (or the model itself with its ``forward`` wrapped for mixed precision, which
hooks see through). FSDP2's ``fully_shard`` wraps nothing: it changes the module's class in place
and turns its parameters into ``DTensor`` shards, so the model is its own unwrapped self, marked
``sharded``. Optimizers are wrapped too: Accelerate's ``prepare`` returns an
``AcceleratedOptimizer`` and Lightning hands a ``LightningOptimizer`` to the module; each keeps the
torch optimizer it steps as ``.optimizer`` (:func:`unwrap_optimizer`).

>>> from torch import nn
>>> unwrap(nn.Linear(2, 2))
(Linear(in_features=2, out_features=2, bias=True), None)
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

#: Wrapper classes (by name, so that importing torch.distributed or DeepSpeed is never needed)
#: whose ``module`` attribute is the user's model.
MODULE_WRAPPERS = {
    "DistributedDataParallel": "ddp",
    "DataParallel": "data_parallel",
    "DeepSpeedEngine": "deepspeed",
    "FullyShardedDataParallel": "fsdp1",
}


def unwrap(model: Any) -> tuple[Any, str | None]:
    """``(the user's model, the outermost wrapper's kind)``: ``"ddp"``, ``"data_parallel"``,
    ``"deepspeed"``, ``"fsdp1"``, ``"compiled"``, ``"fsdp"`` (FSDP2, sharded in place), or ``None``."""
    kind = None
    while isinstance(model, nn.Module):
        name = type(model).__name__
        inner = getattr(model, "module", None)
        if name in MODULE_WRAPPERS and isinstance(inner, nn.Module):
            kind = kind or MODULE_WRAPPERS[name]
            model = inner
            continue
        compiled = getattr(model, "_orig_mod", None)
        if name == "OptimizedModule" and isinstance(compiled, nn.Module):
            kind = kind or "compiled"
            model = compiled
            continue
        break
    if kind is None and is_fully_sharded(model):
        kind = "fsdp"
    return model, kind


#: Optimizer wrapper classes (by name, so that neither library is imported) whose ``optimizer``
#: attribute is the optimizer they step.
OPTIMIZER_WRAPPERS = ("AcceleratedOptimizer", "LightningOptimizer")


def unwrap_optimizer(optimizer: Any) -> Any:
    """The optimizer inside Accelerate's and Lightning's wrappers (whose class is not the
    algorithm's: Lightning's is made on the fly, ``LightningAdam``); anything else as it is."""
    while any(c.__name__ in OPTIMIZER_WRAPPERS for c in type(optimizer).__mro__):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    return optimizer


def is_fully_sharded(model: Any) -> bool:
    """Whether FSDP2's ``fully_shard`` was applied to the model or any of its submodules (its
    parameters are then ``DTensor`` shards)."""
    if not isinstance(model, nn.Module) or "torch.distributed.fsdp" not in sys.modules:
        return False  # fully_shard imports it: without it nothing can be sharded
    return any(any(c.__name__ == "FSDPModule" for c in type(m).__mro__) for m in model.modules())


__all__ = ["MODULE_WRAPPERS", "OPTIMIZER_WRAPPERS", "is_fully_sharded", "unwrap", "unwrap_optimizer"]
