"""Steering development with influence: up-weight data inside the window where a stage forms, or before it.

Chapter 7 of the book (Lee et al. 2025, arXiv:2510.12071: up-weighting induction-pattern data inside the window
in which the induction circuit forms speeds its formation more than the same up-weighting before that window).

- :mod:`.schedule`: the window rules (:func:`peak_window`, :func:`rise_window`, :func:`induction_window`), the
  equal-extra-weight schedules (:func:`window_schedule`, :func:`before_window`) and :func:`paired_difference`.
- :mod:`.dln`:      the toy model: Saxe's mode dynamics predict each mode's onset under a weight schedule
                    (:func:`predicted_onsets`); :func:`steer` trains the conditions and seeds as one batch.
- :mod:`.lm`:       the language model: :func:`train_steered` adds induction-pattern sequences to the batches
                    on a schedule and measures the induction head in place.

Time is in optimizer steps throughout; extra weight is per item (toy) or whole extra sequences (LM).
"""

from .dln import (CONDITIONS, ToySteering, influence_window, mode_onsets, mode_weights, predicted_onsets, steer,
                  target_items)
from .lm import SteeredRun, SteeringConfig, crossing_step, train_steered
from .schedule import (Window, before_window, induction_window, paired_difference, peak_window, rise_window,
                       window_schedule)

__all__ = [
    "CONDITIONS", "ToySteering", "influence_window", "mode_onsets", "mode_weights", "predicted_onsets", "steer",
    "target_items",
    "SteeredRun", "SteeringConfig", "crossing_step", "train_steered",
    "Window", "before_window", "induction_window", "paired_difference", "peak_window", "rise_window",
    "window_schedule",
]
