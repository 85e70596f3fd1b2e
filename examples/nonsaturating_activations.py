"""The textbook's three small models: LeakyReLU(0.2), PReLU (both with He normal) and SELU with
LeCun normal. `initialize` reads the activation that follows each Linear and applies the
matching initializer, so the code states only the architecture.

Run: python examples/nonsaturating_activations.py
"""

import torch
from torch import nn

from trainability import activations, initialize

leaky = nn.Sequential(nn.Linear(8, 10), nn.LeakyReLU(negative_slope=0.2), nn.Linear(10, 1))
prelu = nn.Sequential(nn.Linear(8, 10), nn.PReLU(), nn.Linear(10, 1))
selu = nn.Sequential(nn.Linear(8, 10), activations.get("selu").module(), nn.Linear(10, 1))

x = torch.randn(32, 8)
for name, model in [("LeakyReLU(0.2)", leaky), ("PReLU", prelu), ("SELU", selu)]:
    plan = initialize(model)
    print(f"--- {name}: output shape {tuple(model(x).shape)}")
    print(plan)
