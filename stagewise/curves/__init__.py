"""Reading curves over checkpoints: one rule per idea, used by every chapter and by steering.

A *curve* is a quantity measured at the checkpoints of a training run: ``steps`` (K,), training steps,
strictly increasing (the grid may be uneven), and ``values`` (K,) (a few rules take (K, ...) and read every
trailing entry as its own curve). Where a rule takes ``stderr`` (K,), the Monte Carlo standard errors of the
values, it counts only what stands out of that noise by ``z`` standard errors. Steps are interpolated linearly
between checkpoints wherever a rule locates something between them.

- **crossings**: :func:`first_crossing` (the first step at which a curve reaches a level) and
  :func:`half_rise_step` (a rise's half-way point, from its plateau to its maximum);
- **signs**: :func:`sign_change_step` (the first change of sign, either way, among values that stand out of
  their noise) and :func:`sign_flip_step` (the turn from an early negative phase to a positive peak, the BIF's
  "helps, then harms" at a transition);
- **peaks**: :func:`peak_and_decline` (where a curve peaks and whether it falls after, beyond noise);
- **verdicts with power** (:mod:`.power`): :func:`window_mean` over declared windows of checkpoints,
  :func:`decline_between` / :func:`change_between` (the fall, or rise, between two windows declared in advance,
  with its standard error and the smallest change the run could detect), :func:`min_detectable_decline`,
  :func:`decline_power`, :func:`decline_verdict` and :func:`difference_verdict` (a declared decline, a paired
  difference: one rule each for the chapters and the scorecard) and :func:`budget_for_decline` (the chains × draws
  that detect a given decline, from a pilot's errors);
- **windows**: :class:`Window`, :func:`peak_window` (around a peak, above a fraction of its height) and
  :func:`rise_window` (a rise from 10 % to 90 % of the way);
- **transitions** (chapter 8): a transition is where a curve changes fastest (:func:`rate_transitions`,
  :func:`loss_transitions` for a per-step loss), where an influence trajectory's size peaks
  (:func:`peak_transitions` of :func:`influence_activity`: the between-phase term of the law of total covariance
  peaks where two phases are equally likely), or where a noisy staircase changes level (:func:`change_points`:
  the piecewise-constant fit minimising Σ_k ((y_k − m_seg(k))/σ_k)² + penalty × (number of changes), exact by
  dynamic programming, σ_k the given standard errors or :func:`robust_noise`, default penalty 3·ln K, above BIC's
  2·ln K, so that pure noise gives no change point in most runs); :func:`match_transitions` and
  :func:`detection_summary` score detections against known transitions, :func:`detect_signals` applies
  chapter 8's settings of all three rules to one run's records.

Influence curves keep the paper's sign: negative means i helps j. Modules: :mod:`.points` (crossings, signs,
peaks, windows), :mod:`.power` (verdicts with their power) and :mod:`.transitions` (rates, influence peaks, change points, matching).
"""

from .points import (Window, first_crossing, half_rise_step, peak_and_decline, peak_window, rise_window,
                     sign_change_step, sign_flip_step)
from .power import (DECLINE_VERDICTS, DIFFERENCE_VERDICTS, POWER, POWER_Z, Decline, WindowMean, budget_for_decline,
                    change_between, decline_between, decline_power, decline_verdict, difference_verdict,
                    min_detectable_decline, min_detectable_rise, scaled_budget, window_mean)
from .transitions import (DIRECTIONS, LOSS_RULE, change_points, detect_signals, detection_summary,
                          influence_activity, loss_transitions, match_transitions, peak_transitions,
                          rate_transitions, robust_noise, smooth_curve)

__all__ = [
    "DECLINE_VERDICTS", "DIFFERENCE_VERDICTS", "DIRECTIONS", "LOSS_RULE", "POWER", "POWER_Z", "Decline", "Window",
    "WindowMean", "budget_for_decline", "change_between", "change_points", "decline_between", "decline_power",
    "decline_verdict", "detect_signals", "detection_summary", "difference_verdict", "first_crossing",
    "half_rise_step", "influence_activity", "loss_transitions", "match_transitions", "min_detectable_decline",
    "min_detectable_rise", "peak_and_decline", "peak_transitions", "peak_window", "rate_transitions", "rise_window",
    "robust_noise", "scaled_budget", "sign_change_step", "sign_flip_step", "smooth_curve", "window_mean",
]
