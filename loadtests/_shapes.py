"""Users over time for the scenarios driven by a ``LoadTestShape`` (pure: no Locust)."""

from __future__ import annotations


def ramp_users(
    elapsed_s: float, peak: int, ramp_s: float, hold_s: float, tail_s: float, tail_users: int = 1
) -> int | None:
    """Users wanted ``elapsed_s`` into an autoscaling run; None once it is over.

    From 1 user up to ``peak`` over ``ramp_s``, ``hold_s`` at the peak, down to 1 over ``ramp_s``,
    then ``tail_s`` at ``tail_users`` (0: idle, to watch a scale to zero).
    """
    if elapsed_s < ramp_s:
        return max(1, round(1 + (peak - 1) * elapsed_s / ramp_s))
    if elapsed_s < ramp_s + hold_s:
        return peak
    if elapsed_s < 2 * ramp_s + hold_s:
        return max(1, round(peak - (peak - 1) * (elapsed_s - ramp_s - hold_s) / ramp_s))
    if elapsed_s < 2 * ramp_s + hold_s + tail_s:
        return tail_users
    return None


def spike_phase(elapsed_s: float, baseline_s: float, spike_s: float, recover_s: float) -> str | None:
    """``baseline``, ``spike``, ``recover``, or None once a spike run is over."""
    if elapsed_s < baseline_s:
        return "baseline"
    if elapsed_s < baseline_s + spike_s:
        return "spike"
    if elapsed_s < baseline_s + spike_s + recover_s:
        return "recover"
    return None
