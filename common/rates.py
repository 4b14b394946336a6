"""Rates judged on evidence: the lower end of a confidence interval, not the first unlucky ratio.

Used by the campaign guard (tracking/guard.py) and the reputation per organisation
(organisations/reputation.py): both pause only when even the low end of the 95% range of the true
rate is above a limit.
"""

from __future__ import annotations

import math

WILSON_Z = 1.96  # the 95% interval


def wilson_lower_bound(events: int, trials: int, *, z: float = WILSON_Z) -> float:
    """The lower end of the Wilson score interval for a rate of ``events`` in ``trials``.

    Unlike ``events / trials`` it stays low when few trials back a high ratio: 1 complaint in
    312 deliveries is 0.32%, but a true rate as low as 0.06% would often produce it.
    """
    if trials <= 0:
        return 0.0
    ratio = events / trials
    spread = z * z / trials
    centre = ratio + spread / 2
    margin = z * math.sqrt(ratio * (1 - ratio) / trials + spread / (4 * trials))
    return max(0.0, (centre - margin) / (1 + spread))
