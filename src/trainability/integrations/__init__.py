"""Where people train: the Monitor inside other libraries' training loops.

- :mod:`trainability.integrations.huggingface`: ``transformers.Trainer(..., callbacks=[TrainabilityCallback()])``;
- :mod:`trainability.integrations.lightning`: ``lightning.pytorch.Trainer(callbacks=[TrainabilityCallback()])``;
- :mod:`trainability.integrations.keras`: Keras 3 ``model.fit(..., callbacks=[TrainabilityCallback()])``.

A model prepared by Hugging Face Accelerate (``accelerator.prepare``) needs no callback: hand it
to :class:`~trainability.Monitor` as it is, and the Monitor takes the wrapper off.

Each is a thin callback that creates a :class:`~trainability.Monitor`, calls it at the event of
the framework's step where the gradients still exist, prints the findings on one process and
puts the same numbers into the framework's logs (:mod:`trainability.integrations._shared`).
Each imports its framework, so none is imported here. docs/INTEGRATIONS.md says which event each
reads and what that means for the numbers.
"""
