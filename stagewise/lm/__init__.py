"""Language-model part of the package (the paper's §5): models and checkpoints, induction scores, corpus, text;
delimiter pairing and reading influence curves (sign flips, a peak and its decline)."""

from stagewise.lm.model import (
    BLOCKS,
    PYTHIA_STEPS,
    AttentionOnlyConfig,
    AttentionOnlyForCausalLM,
    HubCheckpoints,
    NeoXStyleConfig,
    NeoXStyleForCausalLM,
    load_checkpoint,
    per_token_loss,
    pythia_checkpoints,
    small_lm_config,
)

__all__ = [
    "BLOCKS",
    "PYTHIA_STEPS",
    "AttentionOnlyConfig",
    "AttentionOnlyForCausalLM",
    "HubCheckpoints",
    "NeoXStyleConfig",
    "NeoXStyleForCausalLM",
    "load_checkpoint",
    "per_token_loss",
    "pythia_checkpoints",
    "small_lm_config",
]
from stagewise.lm.induction import (  # noqa: E402
    InductionScores,
    induction_scores,
    prefix_matching_score,
    repeated_random_sequences,
)

__all__ += ["InductionScores", "induction_scores", "prefix_matching_score", "repeated_random_sequences"]
from stagewise.lm.corpus import (  # noqa: E402
    CLASS_NAMES,
    AnnotatedText,
    Corpus,
    CorpusConfig,
    CorpusError,
    annotate_plain_text,
    check_corpus,
    generate_documents,
    make_corpus,
    min_vocab_size,
    repeated_name_sequences,
    token_classes,
    train_tokenizer,
)

from stagewise.lm.text import read_documents, repeated_ngrams  # noqa: E402

__all__ += ["CLASS_NAMES", "AnnotatedText", "Corpus", "CorpusConfig", "CorpusError", "annotate_plain_text",
            "check_corpus", "generate_documents", "make_corpus", "min_vocab_size", "read_documents",
            "repeated_name_sequences", "repeated_ngrams", "token_classes", "train_tokenizer"]
from stagewise.lm.train import (  # noqa: E402
    CHECKPOINT_SCHEDULES,
    LR_SCHEDULES,
    TrainConfig,
    TrainedRun,
    checkpoint_steps,
    lr_factor,
    train,
)
from stagewise.lm.tracking import (  # noqa: E402
    ClassInfluence,
    InductionTrajectory,
    class_influence,
    lm_loss_fn,
    track_induction,
)

__all__ += ["CHECKPOINT_SCHEDULES", "LR_SCHEDULES", "TrainConfig", "TrainedRun", "checkpoint_steps", "lr_factor",
            "train"]

__all__ += ["ClassInfluence", "InductionTrajectory", "class_influence", "lm_loss_fn",
            "track_induction"]
from stagewise.lm.pairing import PairingTrajectory, closer_ids, matched_closers, pairing_scores, track_pairing  # noqa: E402

__all__ += ["PairingTrajectory", "closer_ids", "matched_closers", "pairing_scores", "track_pairing"]
