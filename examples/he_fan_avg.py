"""He initialization based on fan_avg instead of fan_in, as in the textbook:

    tf.keras.initializers.VarianceScaling(scale=2, mode='fan_avg', distribution='uniform')

Run: python examples/he_fan_avg.py
"""

import torch
from torch import nn

from trainability import init

he_avg_init = init.VarianceScaling(scale=2, mode="fan_avg", distribution="uniform")
layer = nn.Linear(300, 100)
he_avg_init(layer.weight)
nn.init.zeros_(layer.bias)
model = nn.Sequential(layer, nn.ReLU())

fan_avg = (300 + 100) / 2
print(f"weight variance {layer.weight.var().item():.6f}, target 2/fan_avg = {2 / fan_avg:.6f}")
print(f"bound {layer.weight.abs().max().item():.4f} <= sqrt(3 * 2 / fan_avg) = {(6 / fan_avg) ** 0.5:.4f}")
print(model(torch.randn(4, 300)).shape)
