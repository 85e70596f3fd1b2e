"""What the optimizer says: each group's learning rate, betas, epsilon and weight decay, and, at a
recorded step, the second-moment estimate an adaptive optimizer divides by.

Adam-family updates are ``lr * m_hat / (sqrt(v_hat) + eps)`` with ``v_hat = v / (1 - beta2^t)``
(Kingma & Ba 2015; AdamW, NAdam, RAdam likewise); RMSprop and Adagrad divide by
``sqrt(v) + eps`` without a bias correction; Adamax by ``max(u, eps)``-like ``u + eps``. Where
``eps`` is comparable to the denominator's square root the update collapses to ``lr * g / eps``
(Wortsman et al. 2023).

>>> import torch
>>> w = torch.nn.Parameter(torch.ones(3))
>>> view = OptimizerView(torch.optim.AdamW([w], lr=1e-3, eps=1e-8))
>>> view.kind, view.lr(), view.eps()
('adam', 0.001, 1e-08)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainability.adapters.wrappers import unwrap_optimizer

#: torch optimizer class name -> (state key of the second moment, how it is corrected).
SECOND_MOMENT: dict[str, tuple[str, str]] = {
    "Adam": ("exp_avg_sq", "adam"), "AdamW": ("exp_avg_sq", "adam"), "NAdam": ("exp_avg_sq", "adam"),
    "RAdam": ("exp_avg_sq", "adam"), "SparseAdam": ("exp_avg_sq", "adam"), "Adamax": ("exp_inf", "max"),
    "RMSprop": ("square_avg", "raw"), "Adagrad": ("sum", "raw"),
}  # fmt: skip


class OptimizerView:
    """A torch optimizer (or a Keras optimizer on the torch backend: its rate and epsilon only)
    read without changing it."""

    def __init__(self, optimizer: Any) -> None:
        optimizer = unwrap_optimizer(optimizer)  # Accelerate's AcceleratedOptimizer, Lightning's LightningOptimizer
        self.optimizer = optimizer
        self.torch = isinstance(optimizer, torch.optim.Optimizer)
        if not self.torch and not hasattr(optimizer, "learning_rate"):
            raise ValueError(
                f"optimizer must be a torch.optim.Optimizer (or a Keras optimizer), got {type(optimizer).__name__}"
            )
        name = type(optimizer).__name__
        found = next((v for k, v in SECOND_MOMENT.items() if k == name), None)
        if found is None and self.torch:  # a subclass of a known optimizer
            found = next((v for k, v in SECOND_MOMENT.items() if any(c.__name__ == k for c in type(optimizer).__mro__)), None)
        self.name = name
        self._state_key, self._correction = found if found else (None, None)
        if found is None and not self.torch:
            self._correction = "adam" if hasattr(optimizer, "beta_2") else None
        self.kind = "adam" if self._correction in ("adam", "max") else "adaptive" if self._correction else "sgd"
        self._group: dict[int, dict[str, Any]] = {}
        if self.torch:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    self._group[id(p)] = group

    # -- hyperparameters --------------------------------------------------------------------------
    def group(self, param: torch.Tensor | None = None) -> dict[str, Any]:
        if not self.torch:
            return {}
        if param is not None and id(param) in self._group:
            return self._group[id(param)]
        return self.optimizer.param_groups[0]

    def lr(self, param: torch.Tensor | None = None) -> float | None:
        """The current learning rate (of the parameter's group; of the first group by default)."""
        if not self.torch:
            value = getattr(self.optimizer, "learning_rate", None)
            try:
                return float(value)  # a Keras variable or schedule value
            except (TypeError, ValueError):
                return None
        lr = self.group(param).get("lr")
        return float(lr) if lr is not None else None

    def lrs(self) -> list[float]:
        """Every group's current learning rate."""
        if not self.torch:
            lr = self.lr()
            return [lr] if lr is not None else []
        return [float(g["lr"]) for g in self.optimizer.param_groups if "lr" in g]

    def eps(self, param: torch.Tensor | None = None) -> float | None:
        if not self.torch:
            value = getattr(self.optimizer, "epsilon", None)
            return float(value) if value is not None else None
        eps = self.group(param).get("eps")
        return float(eps) if isinstance(eps, (int, float)) else None

    def hyperparameters(self) -> list[dict[str, Any]]:
        """Per group: lr, betas, eps, weight_decay and momentum where the optimizer has them."""
        if not self.torch:
            return [{k: v for k in ("lr", "eps") if (v := getattr(self, k)()) is not None}]
        keys = ("lr", "betas", "eps", "weight_decay", "momentum", "nesterov")
        return [{k: g[k] for k in keys if k in g} for g in self.optimizer.param_groups]

    @property
    def adaptive(self) -> bool:
        """Divides by a running second moment (Adam, RMSprop, Adagrad, ...)."""
        return self.kind != "sgd"

    # -- state ----------------------------------------------------------------------------------------
    def second_moment(self, param: torch.Tensor) -> torch.Tensor | None:
        """The denominator's square (bias-corrected ``v_hat`` for Adam; ``v`` for RMSprop and
        Adagrad; ``u^2`` for Adamax), shaped like the parameter (its local shard under FSDP2), or
        ``None`` before the first step or for an optimizer without one. A view or a new tensor on
        the parameter's device; nothing is read to the host."""
        if not self.torch or self._state_key is None:
            return None
        state = self.optimizer.state.get(param)
        if not state or self._state_key not in state:
            return None
        v = state[self._state_key]
        v = v.to_local() if hasattr(v, "to_local") else v
        if self._correction == "max":
            return v.square()
        if self._correction == "adam":
            beta2 = float(self.group(param).get("betas", (0.9, 0.999))[1])
            step = state.get("step", 1)
            if isinstance(step, torch.Tensor):  # on the device for fused/capturable Adam: no host read
                correction = 1.0 - torch.pow(beta2, step.to(device=v.device, dtype=torch.float32))
                return v / correction.clamp_min(torch.finfo(torch.float32).tiny).to(v.dtype)
            correction = 1.0 - beta2 ** float(step)
            return v / correction if correction > 0 else v
        return v


def effective_lr(view: OptimizerView | None) -> float | None:
    """The largest group learning rate (the one that moves weights most), or ``None``."""
    if view is None:
        return None
    lrs = [lr for lr in view.lrs() if math.isfinite(lr)]
    return max(lrs) if lrs else None


__all__ = ["SECOND_MOMENT", "OptimizerView", "effective_lr"]
