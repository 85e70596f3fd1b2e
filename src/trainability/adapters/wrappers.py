"""Models as the user hands them: wrapped for data parallelism, sharded, or compiled.

``DistributedDataParallel`` (and ``DataParallel``, DeepSpeed's engine) keep the user's model as
``.module``; ``torch.compile`` keeps it as ``._orig_mod``; Hugging Face Accelerate's ``prepare``
returns one of these (or the model itself with its ``forward`` wrapped for mixed precision, which
hooks see through). FSDP2's ``fully_shard`` wraps nothing: it changes the module's class in place
and turns its parameters into ``DTensor`` shards, so the model is its own unwrapped self, marked
``sharded``.

>>> from torch import nn
>>> unwrap(nn.Linear(2, 2))
(Linear(in_features=2, out_features=2, bias=True), None)
"""

from __future__ import annotations

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


def is_fully_sharded(model: Any) -> bool:
    """Whether FSDP2's ``fully_shard`` was applied to the model or any of its submodules (its
    parameters are then ``DTensor`` shards)."""
    if not isinstance(model, nn.Module):
        return False
    return any(any(c.__name__ == "FSDPModule" for c in type(m).__mro__) for m in model.modules())


__all__ = ["MODULE_WRAPPERS", "is_fully_sharded", "unwrap"]
