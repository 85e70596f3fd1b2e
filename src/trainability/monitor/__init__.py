"""The Monitor: the doctor's verdicts while a model trains, at a cost nobody notices.

:class:`Monitor` (in :mod:`trainability.monitor.core`) owns the schedule and the hooks;
:mod:`trainability.monitor.plot` draws what it recorded.
"""

from trainability.monitor.core import DEFAULT_EVERY, STATISTICS, Monitor, Schedule, make_schedule

__all__ = ["DEFAULT_EVERY", "STATISTICS", "Monitor", "Schedule", "make_schedule"]
