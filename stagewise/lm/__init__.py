"""Language-model part of the package (PAPER.md §5): models and checkpoints, induction scores, corpus."""

from stagewise.lm.model import (
    PYTHIA_STEPS,
    AttentionOnlyConfig,
    AttentionOnlyForCausalLM,
    load_checkpoint,
    per_token_loss,
    pythia_checkpoints,
)

__all__ = [
    "PYTHIA_STEPS",
    "AttentionOnlyConfig",
    "AttentionOnlyForCausalLM",
    "load_checkpoint",
    "per_token_loss",
    "pythia_checkpoints",
]
from stagewise.lm.induction import (  # noqa: E402
    InductionScores,
    induction_scores,
    prefix_matching_score,
    repeated_random_sequences,
)

__all__ += ["InductionScores", "induction_scores", "prefix_matching_score", "repeated_random_sequences"]
