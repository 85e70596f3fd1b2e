"""Where people train: the Monitor inside other libraries' training loops.

- :mod:`trainability.integrations.lightning`: ``lightning.pytorch.Trainer(callbacks=[TrainabilityCallback()])``;
- :mod:`trainability.integrations.keras`: Keras 3 ``model.fit(..., callbacks=[TrainabilityCallback()])``.

Each is a thin callback that creates a :class:`~trainability.Monitor` and calls it at the right
moment of the framework's step; each imports its framework, so none is imported here.
"""
