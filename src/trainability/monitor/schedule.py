"""When the Monitor records: a predicate on the step number, kept apart from what it records.

>>> [s for s in range(60) if make_schedule(None)(s)]
[0, 1, 2, 4, 8, 16, 25, 50]
>>> [s for s in range(25) if make_schedule(10)(s)]
[0, 10, 20]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

#: The default schedule records every this many steps, after a doubling start.
DEFAULT_EVERY = 25

Schedule = int | Literal["log"] | Callable[[int], bool] | None


def _power_of_two(step: int) -> bool:
    return step == 0 or (step & (step - 1)) == 0


def make_schedule(every: Schedule) -> Callable[[int], bool]:
    """The steps to record.

    - ``None`` (the default): steps 0, 1, 2, 4, 8, 16, then every :data:`DEFAULT_EVERY` steps.
      Runs that diverge do it early (a learning rate far too high blows up within a few steps),
      and the training-time rules need the first updates to measure them; later, one recorded
      step in 25 costs about 1% of the training time (docs/MONITOR.md);
    - ``every=N``: steps 0, N, 2N, ...;
    - ``"log"``: steps 0, 1, 2, 4, 8, ...;
    - a callable ``step -> bool``.
    """
    if every is None:
        return lambda step: (step < DEFAULT_EVERY and _power_of_two(step)) or step % DEFAULT_EVERY == 0
    if every == "log":
        return _power_of_two
    if callable(every):
        return every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive int, 'log', None (the default schedule) or a callable step -> bool, got {every!r}")
    return lambda step: step % every == 0


__all__ = ["DEFAULT_EVERY", "Schedule", "make_schedule"]
