"""Mean-field signal propagation: how deep a network can be and still train, before training it.

For a wide fully connected stack with weights of variance ``sigma_w^2 / fan_in`` and biases of
variance ``sigma_b^2`` (Poole et al. 2016, Schoenholz et al. 2017), z ~ N(0, 1):

- length map: ``q' = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``, fixed point ``q*``;
- ``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]``: below 1 the network is ordered (inputs become
  indistinguishable, gradients vanish), above 1 chaotic (gradients explode), at 1 critical;
- correlation map at ``q*``: ``c' = (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q*`` with
  ``u1 = sqrt(q*) z1``, ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)``, fixed point ``c*``;
  ``chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]`` at ``c*``;
- depth scales ``xi_c = -1 / ln chi_c`` (infinite at criticality) and
  ``xi_q = -1 / ln(chi_1 + sigma_w^2 E[phi''(u) phi(u)])``;
- networks train when their depth is below about 6 xi_c (Schoenholz et al. 2017).

These hold at a proper fixed point. Where there is none (q* -> 0 or infinity: GELU, SiLU and
Mish at sigma_w^2 = 2 decay, leaky ReLU and SELU at sigma_w^2 = 2 grow), ``fixed_point`` is 0.0
or ``inf``, the depth scales are ``nan`` and ``summary()["signal"]`` says how the signal moves;
:func:`propagate` gives the finite-depth prediction along the stack's own trajectory instead
(q_l, chi_l and the gradient gain from the top to each layer, from the input's second moment
and each layer's variances), with the depth at which the gain passes 100x.

One-dimensional expectations use a composite Gauss-Legendre rule cut at 0 and refined near it
at the activation's scale (accurate for any q; ``theory._moments``), pairs an 80x80
Gauss-Hermite grid; derivatives come from autograd, so any registered activation (with
hyperparameters) or torch-traceable callable works.

>>> round(critical_weight_variance("tanh", bias_variance=0.05), 2)
1.76
>>> chi("relu", weight_variance=2.0, bias_variance=0.0)
1.0
>>> propagate("gelu", 2.0, depth=20).crossing_depth  # He for GELU: the signal decays towards 0
27
"""

from trainability.theory.finite_depth import CROSSING_RATIO, MAX_EXTRA_DEPTH, Propagation, propagate
from trainability.theory.meanfield import (
    TRAINABLE_DEPTH_MULTIPLE,
    ActivationLike,
    activation_moments,
    chi,
    correlation_fixed_point,
    critical_weight_variance,
    depth_scale,
    fixed_point,
    length_depth_scale,
    max_trainable_depth,
    signal,
    summary,
    weight_variance_of,
)

__all__ = [
    "CROSSING_RATIO",
    "MAX_EXTRA_DEPTH",
    "TRAINABLE_DEPTH_MULTIPLE",
    "ActivationLike",
    "activation_moments",
    "chi",
    "correlation_fixed_point",
    "critical_weight_variance",
    "depth_scale",
    "fixed_point",
    "length_depth_scale",
    "max_trainable_depth",
    "propagate",
    "Propagation",
    "signal",
    "summary",
    "weight_variance_of",
]
