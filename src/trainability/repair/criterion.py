"""When does a network *train*? The criterion every repair run is judged by.

A run under the budget trains when all of these hold at its last evaluation:

1. **finite**: the training loss stayed finite at every step (``fit`` stops on NaN/Inf);
2. **the loss fell**: the last round's mean training loss, or the validation loss (measured in
   eval mode: dropout inflates the training loss), is at most ``LOSS_FRACTION`` (0.95) of the best
   constant predictor's, i.e. the network learned more than the class frequencies
   (cross-entropy: the entropy of the training labels, ``H(y) = -sum p_k ln p_k``; MSE: the
   training targets' variance);
3. **the validation metric beats chance**: classification accuracy at least
   ``chance + max(3 * sqrt(chance (1 - chance) / n), (1 - chance) / 10)``, where ``chance`` is
   the commonest class's share of the ``n`` validation samples (what a constant prediction
   scores): three standard errors of a chance-level score, and at least a tenth of the way from
   chance to perfect; for regression a validation MSE at most 0.9 of the validation targets'
   variance (R^2 >= 0.1);
4. **better than before**, when a floor is set: the metric also beats the floor (repair sets it
   to the probe's own score plus three standard errors when the probe trained but the doctor
   found errors, so that a candidate must do better than leaving the network alone).

A run has **clearly failed**, and is stopped before its budget, when its loss turned NaN/Inf, or
when after ``FLAT_FRACTION`` (half) of the budget its loss has not fallen (item 2) and its
validation metric is still within noise of chance (:meth:`Criterion.flat`: not two standard
errors above it): it has not started to learn where a network that trains already clears the
criterion (healthy networks in the suite: within 30 to 120 of 300 steps).

A broken network sits exactly at chance (a dead or saturated stack predicts the commonest
class); a healthy one clears it within a few hundred steps even where it is still far from its
final score (MNIST-1D after 300 steps: 0.24-0.32 against a chance of 0.10).

>>> from trainability.repair.criterion import Criterion
>>> c = Criterion(classification=True, chance=0.1, prior_loss=2.30, margin=0.09, samples=288)
>>> c.trains([{"loss": 1.2, "val_accuracy": 0.85}]), c.trains([{"loss": 2.30, "val_accuracy": 0.10}])
(True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

#: The last round's training loss must be at most this fraction of the constant predictor's.
LOSS_FRACTION = 0.95
#: How many standard errors of a chance-level score a metric must clear.
STANDARD_ERRORS = 3.0
#: ... and at least this share of the way from chance to a perfect score.
LEAST_PROGRESS = 0.1
#: A run still flat at the constant predictor's level after this share of its budget has failed.
FLAT_FRACTION = 0.5


@dataclass(frozen=True)
class Criterion:
    """The thresholds for one data set (see the module docstring); picklable, so it travels
    with each task as its early-stopping condition (``Task.until``)."""

    classification: bool
    chance: float  # commonest class's validation share, or the validation targets' variance
    prior_loss: float  # the best constant predictor's training loss
    margin: float  # how far past chance the validation metric must get
    samples: int  # validation samples
    floor: float | None = None  # a score to beat as well (the probe's, when it trained with errors)

    @classmethod
    def for_splits(cls, splits: Any) -> Criterion:
        """The criterion for a data set's training and validation splits."""
        y_train, y_val = splits.train.y, splits.validation.y
        n = int(y_val.shape[0])
        if n == 0:
            raise ValueError("the validation split is empty: repair needs validation data to judge training")
        if not y_train.is_floating_point():
            counts = torch.bincount(y_train.flatten()).double()
            p = counts[counts > 0] / counts.sum()
            prior = float(-(p * p.log()).sum())
            chance = float(torch.bincount(y_val.flatten()).max()) / n
            margin = max(STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / n), LEAST_PROGRESS * (1 - chance))
            return cls(True, chance, prior, margin, n)
        prior = float(y_train.double().var(unbiased=False).mean())
        variance = float(y_val.double().var(unbiased=False).mean())
        return cls(False, variance, prior, LEAST_PROGRESS * variance, n)

    def metric(self, epochs: list[dict[str, Any]]) -> float | None:
        """The run's validation score at its last evaluation: accuracy (higher is better) or MSE."""
        if not epochs:
            return None
        value = epochs[-1].get("val_accuracy" if self.classification else "val_loss")
        return float(value) if value is not None and math.isfinite(value) else None

    def threshold(self) -> float:
        """The validation score a run must reach (at least; at most for regression)."""
        if self.classification:
            return max(self.chance + self.margin, self.floor if self.floor is not None else -math.inf)
        return min(self.chance - self.margin, self.floor if self.floor is not None else math.inf)

    def trains(self, epochs: list[dict[str, Any]]) -> bool:
        """Do these epoch records (the runner's, last one judged) show a network that trains?"""
        score = self.metric(epochs)
        loss = epochs[-1].get("loss") if epochs else None
        if score is None or loss is None or not math.isfinite(loss) or not self._loss_fell(epochs[-1]):
            return False
        return score >= self.threshold() if self.classification else score <= self.threshold()

    def _loss_fell(self, record: dict[str, Any]) -> bool:
        """Is the training loss, or the validation loss (dropout inflates the training loss; the
        validation loss is measured in eval mode), at most ``LOSS_FRACTION`` of the constant
        predictor's?"""
        losses = [record.get("loss"), record.get("val_loss")]
        return any(v is not None and math.isfinite(v) and v <= LOSS_FRACTION * self.prior_loss for v in losses)

    __call__ = trains  # the runner's early stop: ``Task(until=criterion)``

    def flat(self, epochs: list[dict[str, Any]], rounds: int) -> bool:
        """Has a run of ``rounds`` rounds clearly failed by its records so far? After at least
        ``FLAT_FRACTION`` of the rounds, its last training loss is above ``LOSS_FRACTION`` of the
        constant predictor's and its validation metric has not cleared chance."""
        if len(epochs) < math.ceil(FLAT_FRACTION * rounds):
            return False
        loss = epochs[-1].get("loss")
        if loss is None or not math.isfinite(loss):
            return True
        score = self.metric(epochs)
        return not self._loss_fell(epochs[-1]) and not self.clearly_better(score, self.chance)

    def clearly_better(self, a: float | None, b: float | None) -> bool:
        """Is validation score ``a`` better than ``b`` by more than noise: two standard errors
        of an accuracy near theirs, or 10% lower for an MSE?"""
        if a is None or not math.isfinite(a):
            return False
        if b is None or not math.isfinite(b):
            return True
        if self.classification:
            p = min(max((a + b) / 2, 0.0), 1.0)
            return a - b > 2 * math.sqrt(max(p * (1 - p), 1e-4) / self.samples)
        return a < b * (1 - LEAST_PROGRESS)

    def score_key(self, epochs: list[dict[str, Any]]) -> tuple[float, float]:
        """A run's standing, larger is better: the validation metric (accuracy, or minus the MSE),
        then minus the last training loss."""
        score = self.metric(epochs)
        loss = epochs[-1].get("loss") if epochs else None
        metric = -math.inf if score is None else (score if self.classification else -score)
        return metric, -loss if loss is not None and math.isfinite(loss) else -math.inf

    def better_than(self, score: float) -> Criterion:
        """This criterion with a floor just past ``score``: three standard errors of it (accuracy),
        or 10% lower (MSE)."""
        if self.classification:
            return replace(self, floor=score + STANDARD_ERRORS * math.sqrt(max(score * (1 - score), 0.0) / self.samples))
        return replace(self, floor=score * (1 - LEAST_PROGRESS))

    def describe(self) -> str:
        """One sentence: what a run must show."""
        if self.classification:
            floor = f", and beat the network as it is ({self.floor:.3f})" if self.floor is not None else ""
            return (f"finite loss; last training (or validation) loss <= {LOSS_FRACTION:g} x {self.prior_loss:.3g} (the "
                    f"class frequencies' cross-entropy); validation accuracy >= {self.chance + self.margin:.3f} "
                    f"(chance {self.chance:.3f} + {self.margin:.3f}){floor}")  # fmt: skip
        floor = f", and beat the network as it is ({self.floor:.4g})" if self.floor is not None else ""
        return (f"finite loss; last training (or validation) loss <= {LOSS_FRACTION:g} x {self.prior_loss:.4g} (the targets' "
                f"variance); validation MSE <= {self.chance - self.margin:.4g} (R^2 >= {LEAST_PROGRESS:g}){floor}")  # fmt: skip
