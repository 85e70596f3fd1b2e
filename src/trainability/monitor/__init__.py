"""The Monitor: the doctor's verdicts while a model trains, at a cost nobody notices.

- :mod:`trainability.monitor.core`: :class:`Monitor`, its hooks and its records;
- :mod:`trainability.monitor.schedule`: when it records;
- :mod:`trainability.monitor.updates`, :mod:`~trainability.monitor.optimizer`,
  :mod:`~trainability.monitor.attention`, :mod:`~trainability.monitor.outputs`,
  :mod:`~trainability.monitor.losses`: what it measures during training;
- :mod:`trainability.monitor.rules`: the training-time verdicts;
- :mod:`trainability.monitor.plot`: its picture.
"""

from trainability.monitor.core import MODEL, STATISTICS, Monitor
from trainability.monitor.schedule import DEFAULT_EVERY, Schedule, make_schedule

__all__ = ["DEFAULT_EVERY", "MODEL", "STATISTICS", "Monitor", "Schedule", "make_schedule"]
