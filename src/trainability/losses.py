"""Losses shared by the doctor and the training loop: the default for given targets, and the
surrogate used when there are none."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def surrogate_loss(output: torch.Tensor) -> torch.Tensor:
    """The loss used without targets: the outputs' sum weighted by fixed standard-normal weights
    (seed 0), over the batch size. Its gradient at the output is that random direction whatever
    the outputs are, so every layer gets a gradient and ratios between layers are meaningful."""
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(0)).to(output)
    return (output * weights).sum() / max(output.shape[0], 1)


def default_loss(output: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy for integer class targets, MSE for float targets, the surrogate without;
    targets that do not fit the outputs raise ``ValueError`` naming both shapes."""
    if targets is None:
        return surrogate_loss(output)
    targets = targets.to(output.device)
    if not targets.is_floating_point():
        if output.dim() < 2:
            raise ValueError(f"integer class targets need outputs of shape (batch, classes), got {tuple(output.shape)}")
        if targets.shape[0] != output.shape[0]:
            raise ValueError(f"{targets.shape[0]} targets for a batch of {output.shape[0]} outputs")
        if len(targets) and (targets.min() < 0 or targets.max() >= output.shape[1]):
            raise ValueError(
                f"targets hold classes {int(targets.min())}..{int(targets.max())} but the model outputs "
                f"{output.shape[1]} scores per sample"
            )
        return F.cross_entropy(output, targets)
    if targets.shape != output.shape:
        if targets.numel() != output.numel():
            raise ValueError(f"float targets of shape {tuple(targets.shape)} do not fit outputs of shape {tuple(output.shape)}")
        targets = targets.reshape(output.shape)
    return F.mse_loss(output, targets)
