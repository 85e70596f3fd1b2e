"""The textbook's `Dense(10, activation='relu', kernel_initializer='he_normal')`, in PyTorch.

Run: python examples/he_normal_layer.py
"""

import torch
from torch import nn

from trainability import init

layer = nn.Linear(784, 10)
init.get("he_normal")(layer.weight)  # fills in place: variance 2 / fan_in
nn.init.zeros_(layer.bias)
model = nn.Sequential(layer, nn.ReLU())

print(f"weight variance {layer.weight.var().item():.6f}, He target 2/784 = {2 / 784:.6f}")
print(model(torch.randn(4, 784)).shape)
