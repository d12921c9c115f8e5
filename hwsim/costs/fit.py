"""Calibration helpers: from measured (size, time) points back to an :class:`Efficiency` curve.

The cost model's time is linear in work (see :mod:`hwsim.costs.ops`):

    t(x) = overhead + half / (peak * max) + x / (peak * max)

so a straight-line fit ``t = a + b x`` gives the achieved rate ``1 / b = peak * max`` and the fixed
cost ``a = overhead + half / rate``, from which ``max`` and ``half`` follow.
"""

from __future__ import annotations

import math
from typing import Sequence

from hwsim.costs.ops import _amount
from hwsim.errors import CostError


def fit_linear_time(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Fit ``t = fixed_s + x / rate`` to ``(x, t)`` points; return ``(rate, fixed_s)``.

    Least squares on relative error (each residual divided by its ``t``, i.e. weights ``1/t**2``),
    so microsecond-scale small sizes count as much as second-scale large ones. ``fixed_s`` may come
    out slightly negative on noisy data; :func:`efficiency_from_fit` clamps what it derives from it.
    """
    try:
        pairs = [(float(x), float(t)) for x, t in points]
    except (TypeError, ValueError):
        raise CostError(f"points must be (x, t) pairs of numbers, got {points!r}") from None
    if len(pairs) < 2:
        raise CostError(f"points must hold at least 2 (x, t) pairs to fit a line, got {len(pairs)}")
    for x, t in pairs:
        if not (math.isfinite(x) and x >= 0):
            raise CostError(f"points x must be finite and >= 0, got x={x!r}")
        if not (math.isfinite(t) and t > 0):
            raise CostError(f"points t must be finite and > 0, got t={t!r}")
    weights = [1.0 / (t * t) for _, t in pairs]
    total = math.fsum(weights)
    x_mean = math.fsum(w * x for w, (x, _) in zip(weights, pairs)) / total
    t_mean = math.fsum(w * t for w, (_, t) in zip(weights, pairs)) / total
    sxx = math.fsum(w * (x - x_mean) ** 2 for w, (x, _) in zip(weights, pairs))
    sxt = math.fsum(w * (x - x_mean) * (t - t_mean) for w, (x, t) in zip(weights, pairs))
    if sxx == 0:
        raise CostError(f"points must have at least 2 distinct x values, got x={x_mean!r} only")
    slope = sxt / sxx
    if not slope > 0:
        raise CostError(f"fitted slope must be > 0 (time must grow with size), got slope={slope!r} s per unit")
    return 1.0 / slope, t_mean - slope * x_mean


def efficiency_from_fit(rate: float, fixed_s: float, peak: float, overhead_s: float) -> tuple[float, float]:
    """``(max_fraction, half)`` of an Efficiency curve that reproduces a fitted line.

    ``max_fraction = rate / peak``, capped at 1 (a measured rate above the datasheet peak is noise or a
    wrong peak, not a reason to exceed it). ``half = (fixed_s - overhead_s) * peak * max_fraction``,
    clamped at 0: equal to ``(fixed_s - overhead_s) * rate`` when uncapped, and when capped it still
    reproduces the fitted fixed cost at the capped rate.
    """
    rate = _amount("rate", rate)
    peak = _amount("peak", peak)
    overhead_s = _amount("overhead_s", overhead_s, allow_zero=True)
    try:
        fixed_s = float(fixed_s)
    except (TypeError, ValueError):
        raise CostError(f"fixed_s must be a number, got {fixed_s!r}") from None
    if not math.isfinite(fixed_s):
        raise CostError(f"fixed_s must be finite, got {fixed_s!r}")
    max_fraction = min(rate / peak, 1.0)
    half = max((fixed_s - overhead_s) * peak * max_fraction, 0.0)
    return max_fraction, half
