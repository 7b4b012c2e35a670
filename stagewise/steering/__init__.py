"""Steering development with influence: up-weight data inside the window where a stage forms, or before it.

Chapter 7 of the book (Lee et al. 2025, arXiv:2510.12071: up-weighting induction-pattern data inside the window
in which the induction circuit forms speeds its formation more than the same up-weighting before that window).

- :mod:`.schedule`: the induction window (:func:`induction_window`, from the window rules of
  :mod:`stagewise.curves`), the equal-extra-weight schedules (:func:`window_schedule`, :func:`equal_windows`) and
  :func:`paired_difference`.
- :mod:`.dln`:      the toy model: Saxe's mode dynamics predict each mode's onset under a weight schedule
                    (:func:`predicted_onsets`); :func:`steer` trains the conditions and seeds as one batch;
                    :func:`item_bif` and :func:`steer_pools` run the selection experiment on it.
- :mod:`.lm`:       the language model: :func:`train_steered` adds induction-pattern sequences to the batches
                    on a schedule and measures the induction head in place.
- :mod:`.experiment`: :func:`train_conditions`, every condition's schedule for every seed (paired runs), each
                    condition drawing its extra sequences from its own pool.
- :mod:`.selection`: which data to up-weight: :func:`sequence_bif` (the BIF of every training sequence on the
                    induction tokens at a checkpoint), :func:`most_helpful` and :func:`selection_pools` (the BIF's
                    most helpful sequences, a hand-chosen class and random ones, in pools of equal size).
- :mod:`.power`:    :func:`paired_power`, :func:`seeds_for_power` and :func:`min_detectable_effect` of the paired
                    t-test over seeds.
- :mod:`.report`:   chapter 7's tables and summaries (mode labels, shift tables, crossing summaries, verdict).
- :mod:`.figures`:  chapter 7's figures and :func:`show`, which saves and glues one.

Time is in optimizer steps throughout; extra weight is per item (toy) or whole extra sequences (LM).
"""

from .dln import (CONDITIONS, ToyPools, ToySteering, influence_window, item_bif, mode_onsets, mode_weights,
                  predicted_onsets, steer, steer_pools, target_items)
from .experiment import train_conditions
from .figures import (CONDITION_COLORS, CONDITION_LABELS, conditions_figure, effects_figure, power_figure, show,
                      toy_shifts_figure, window_figure)
from .lm import SteeredRun, SteeringConfig, train_steered
from .power import min_detectable_effect, paired_power, seeds_for_power
from .report import (condition_means, crossing_summary, difference_table, effect_table, effects_table,
                     exact_mode_errors, mode_labels, pool_table, power_design, selection_effects, shift_table,
                     stage_of_mode, study_crossings, toy_selection_sentence, verdict, window_sentence)
from .selection import SELECTIONS, SequenceInfluence, most_helpful, pool_mask, selection_pools, sequence_bif
from .schedule import (condition_schedules, equal_windows, induction_window, paired_difference, spread_steps,
                       window_schedule)

__all__ = [
    "CONDITIONS", "ToyPools", "ToySteering", "influence_window", "item_bif", "mode_onsets", "mode_weights",
    "predicted_onsets", "steer", "steer_pools", "target_items",
    "train_conditions",
    "CONDITION_COLORS", "CONDITION_LABELS", "conditions_figure", "effects_figure", "power_figure", "show",
    "toy_shifts_figure", "window_figure",
    "SteeredRun", "SteeringConfig", "train_steered",
    "min_detectable_effect", "paired_power", "seeds_for_power",
    "SELECTIONS", "SequenceInfluence", "most_helpful", "pool_mask", "selection_pools", "sequence_bif",
    "condition_means", "crossing_summary", "difference_table", "effect_table", "effects_table", "exact_mode_errors",
    "mode_labels", "pool_table", "power_design", "selection_effects", "shift_table", "stage_of_mode",
    "study_crossings", "toy_selection_sentence", "verdict", "window_sentence",
    "condition_schedules", "equal_windows", "induction_window", "paired_difference", "spread_steps",
    "window_schedule",
]
