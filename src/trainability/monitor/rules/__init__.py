"""The Monitor's training-time rules: a recorded step's evidence in, findings with fixes out.

One module per concern, as :mod:`trainability.doctor.rules` at initialization; every threshold
is relative to the run's own history or taken from a published result, explained in its module
and in docs/MONITOR.md.
"""

from trainability.monitor.rules.adam import epsilon
from trainability.monitor.rules.attention import logit_growth
from trainability.monitor.rules.evidence import History, Record, TrainingEvidence
from trainability.monitor.rules.gradients import dying, exploding
from trainability.monitor.rules.learning_rate import too_high, too_low
from trainability.monitor.rules.logits import output_divergence
from trainability.monitor.rules.spikes import find_spikes, loss_spike

__all__ = ["History", "Record", "TrainingEvidence", "dying", "epsilon", "exploding", "find_spikes", "logit_growth", "loss_spike",
           "output_divergence", "too_high", "too_low"]  # fmt: skip
