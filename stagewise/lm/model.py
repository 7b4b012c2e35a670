"""The language models of chapter 6: a small attention-only transformer (the default), a GPT-NeoX-style one
with MLPs, and GPT-NeoX itself (Pythia).

:class:`AttentionOnlyForCausalLM` is the 2-layer attention-only model of Olsson et al. / Hoogland et al. written
as a transformers ``PreTrainedModel``: token and learned positional embeddings, ``num_layers`` blocks of
multi-head causal self-attention added to the residual stream (no MLP), an optional layer norm before each
block and before the unembedding, and an unembedding. It saves and loads with ``save_pretrained`` /
``from_pretrained`` and, being plain tensor code, runs under ``torch.func.functional_call`` + ``vmap`` (what the
sampler needs). :class:`NeoXStyleForCausalLM` is the same model with GPT-NeoX's block, Pythia's architecture in
miniature: each block adds to the residual stream an attention layer and an MLP (d_model → d_mlp → d_model, GELU),
each after its own LayerNorm, computed in parallel from the same input (``parallel_residual``, as in Pythia) or
one after the other; it keeps learned positions where GPT-NeoX rotates queries and keys. GPT-NeoX, the
architecture of Pythia, stays available: :func:`load_checkpoint` opens either from
a local folder, and :func:`pythia_checkpoints` names the hub revisions of Pythia's training checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from stagewise.config import Interval, Satisfies, check_fields, is_int

__all__ = [
    "BLOCKS",
    "AttentionOnlyConfig",
    "AttentionOnlyForCausalLM",
    "HubCheckpoints",
    "NeoXStyleConfig",
    "NeoXStyleForCausalLM",
    "PYTHIA_STEPS",
    "load_checkpoint",
    "per_token_loss",
    "pythia_checkpoints",
    "small_lm_config",
]


class AttentionOnlyConfig(PretrainedConfig):
    """Sizes of the attention-only transformer (each checked when the config is made).

    vocab_size:   tokens in the vocabulary (≥ 2).
    n_ctx:        context length in tokens = number of learned positions (≥ 1).
    d_model:      width of the residual stream (≥ 1, a multiple of n_heads).
    n_layers:     attention blocks (≥ 1).
    n_heads:      heads per block (≥ 1); each has width d_model / n_heads.
    layer_norm:   a LayerNorm before each block and before the unembedding (True) or none (False).
    init_std:     standard deviation of the normal initialization of every weight matrix (> 0).
    """

    model_type = "stagewise-attention-only"

    def __init__(
        self,
        vocab_size: int = 64,
        n_ctx: int = 64,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        layer_norm: bool = True,
        init_std: float = 0.02,
        **kwargs,
    ):
        count = Interval(ge=1, integer=True)
        rules = {"vocab_size": Interval(ge=2, integer=True), "n_ctx": count, "d_model": count, "n_layers": count,
                 "n_heads": count, "init_std": Interval(gt=0)}
        if is_int(d_model, 1) and is_int(n_heads, 1):
            rules["d_model"] = Satisfies(lambda d: d % n_heads == 0, f"a multiple of n_heads = {n_heads}")
        given = SimpleNamespace(vocab_size=vocab_size, n_ctx=n_ctx, d_model=d_model, n_layers=n_layers,
                                n_heads=n_heads, init_std=init_std)
        check_fields(given, rules, what="model")  # numpy scalars come back as plain ones
        self.vocab_size = given.vocab_size
        self.n_ctx = given.n_ctx
        self.d_model = given.d_model
        self.n_layers = given.n_layers
        self.n_heads = given.n_heads
        self.layer_norm = bool(layer_norm)
        self.init_std = float(given.init_std)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; returns the block's output and its pattern (batch, head, query, key)."""

    def __init__(self, config: AttentionOnlyConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.norm = nn.LayerNorm(config.d_model) if config.layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm(x)).split(width, dim=-1)
        heads = lambda t: t.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.n_heads)
        # Written out (not scaled_dot_product_attention) so that the pattern can be returned and vmapped.
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        mixed = (pattern @ v).transpose(1, 2).reshape(batch, length, width)
        return self.out(mixed), pattern


class AttentionOnlyForCausalLM(PreTrainedModel):
    """Attention-only transformer: ``forward(input_ids, labels=None)`` → ``CausalLMOutput``.

    input_ids: (batch, seq) token ids, seq ≤ n_ctx. logits: (batch, seq, vocab). loss (when labels are given):
    mean next-token cross-entropy in nats, labels shifted inside as in transformers (label −100 is ignored).
    attentions (when ``output_attentions=True``): one (batch, head, query, key) pattern per layer.
    """

    config_class = AttentionOnlyConfig
    base_model_prefix = "transformer"
    main_input_name = "input_ids"

    def __init__(self, config: AttentionOnlyConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.n_ctx, config.d_model)
        self.blocks = nn.ModuleList(CausalSelfAttention(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model) if config.layer_norm else nn.Identity()
        self.unembed = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.unembed

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> CausalLMOutput:
        length = input_ids.shape[-1]
        if length > self.config.n_ctx:
            raise ValueError(f"sequence of {length} tokens is longer than the context n_ctx = {self.config.n_ctx}")
        x = self.embed(input_ids) + self.pos_embed.weight[:length]
        patterns = []
        for block in self.blocks:
            update, pattern = block(x)
            x = x + update
            patterns.append(pattern)
        logits = self.unembed(self.final_norm(x))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutput(loss=loss, logits=logits, attentions=tuple(patterns) if output_attentions else None)


class NeoXStyleConfig(AttentionOnlyConfig):
    """Sizes of the GPT-NeoX-style transformer: those of :class:`AttentionOnlyConfig` (with ``layer_norm``
    always on) plus

    d_mlp:              width of each block's MLP (≥ 1; default 4 · d_model, as in GPT-NeoX).
    parallel_residual:  x + attention(LN₁(x)) + MLP(LN₂(x)) (True, GPT-NeoX's default) or the sequential
                        h = x + attention(LN₁(x)), h + MLP(LN₂(h)) (False).
    """

    model_type = "stagewise-neox-style"

    def __init__(self, d_mlp: int | None = None, parallel_residual: bool = True, **kwargs):
        kwargs["layer_norm"] = True
        super().__init__(**kwargs)
        width = 4 * self.d_model if d_mlp is None else d_mlp
        given = SimpleNamespace(d_mlp=width)
        check_fields(given, {"d_mlp": Interval(ge=1, integer=True)}, what="model")
        self.d_mlp = given.d_mlp
        self.parallel_residual = bool(parallel_residual)


class NeoXBlock(nn.Module):
    """GPT-NeoX's block: returns (what it adds to the residual stream, the attention pattern)."""

    def __init__(self, config: NeoXStyleConfig):
        super().__init__()
        self.attention = CausalSelfAttention(config)  # with its own LayerNorm before it
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_mlp), nn.GELU(),
                                 nn.Linear(config.d_mlp, config.d_model))
        self.parallel = config.parallel_residual

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, pattern = self.attention(x)
        after = x if self.parallel else x + attended
        return attended + self.mlp(self.mlp_norm(after)), pattern


class NeoXStyleForCausalLM(AttentionOnlyForCausalLM):
    """:class:`AttentionOnlyForCausalLM` with GPT-NeoX's blocks (attention and MLP, see :class:`NeoXBlock`); the
    same inputs and outputs."""

    config_class = NeoXStyleConfig

    def __init__(self, config: NeoXStyleConfig):
        PreTrainedModel.__init__(self, config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.n_ctx, config.d_model)
        self.blocks = nn.ModuleList(NeoXBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.unembed = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()


BLOCKS = ("attention", "neox")


def small_lm_config(block: str = "attention", **sizes) -> AttentionOnlyConfig:
    """The config of chapter 6's model with ``block`` "attention" (:class:`AttentionOnlyConfig`) or "neox"
    (:class:`NeoXStyleConfig`); ``sizes`` are passed on (vocab_size, n_ctx, d_model, …)."""
    if block not in BLOCKS:
        raise ValueError(f"block = {block!r} (accepted: " + ", ".join(map(repr, BLOCKS)) + ")")
    return NeoXStyleConfig(**sizes) if block == "neox" else AttentionOnlyConfig(**sizes)


def per_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (nats) of every predicted token: logits (..., seq, vocab) → (..., seq − 1).

    Entry t is the loss of predicting token t + 1 from tokens ≤ t.
    """
    logp = logits[..., :-1, :].log_softmax(-1)
    return -logp.gather(-1, input_ids[..., 1:, None]).squeeze(-1)


# The attention-only model opens through the Auto classes like any transformers model.
AutoConfig.register(AttentionOnlyConfig.model_type, AttentionOnlyConfig, exist_ok=True)
AutoModelForCausalLM.register(AttentionOnlyConfig, AttentionOnlyForCausalLM, exist_ok=True)
AutoConfig.register(NeoXStyleConfig.model_type, NeoXStyleConfig, exist_ok=True)
AutoModelForCausalLM.register(NeoXStyleConfig, NeoXStyleForCausalLM, exist_ok=True)


def load_checkpoint(path: str | Path, revision: str | None = None, **kwargs) -> PreTrainedModel:
    """Open a saved checkpoint (a folder written by ``save_pretrained``, or a hub name with ``revision``).

    Works for :class:`AttentionOnlyForCausalLM` and for any causal LM transformers knows (GPT-NeoX / Pythia).
    Returns the model in eval mode. Hub names need network access; local folders never touch the network.
    """
    local = Path(path).is_dir()
    text = str(path)
    if not local and (isinstance(path, Path) or Path(text).exists() or text.startswith((".", "/", "~"))
                      or text.count("/") > 1 or "\\" in text):
        siblings = sorted(p.name for p in Path(text).parent.glob("*") if p.is_dir())[:8] \
            if Path(text).parent.is_dir() else []
        raise FileNotFoundError(f"no checkpoint folder {text}" + (f" (folders beside it: {', '.join(siblings)})"
                                                                 if siblings else "")
                                + "; a local checkpoint is a folder written by save_pretrained")
    model = AutoModelForCausalLM.from_pretrained(
        str(path), revision=None if local else revision, local_files_only=local, **kwargs
    )
    return model.eval()


# Pythia's published training checkpoints: step 0, log-spaced 1 … 512, then every 1000 steps to 143000.
PYTHIA_STEPS: tuple[int, ...] = (0, *(2**k for k in range(10)), *range(1000, 143001, 1000))


def pythia_checkpoints(
    name: str = "EleutherAI/pythia-14m",
    steps: Sequence[int] | None = None,
) -> list[tuple[str, str]]:
    """(model name, hub revision) pairs of Pythia's training checkpoints, e.g. ("EleutherAI/pythia-14m", "step1000").

    steps: the training steps wanted (each must be one Pythia published, see :data:`PYTHIA_STEPS`); None = all.
    Nothing is downloaded: pass each pair to :func:`load_checkpoint` (``load_checkpoint(name, revision=rev)``).
    """
    chosen = PYTHIA_STEPS if steps is None else tuple(steps)
    missing = sorted(set(chosen) - set(PYTHIA_STEPS))
    if missing:
        raise ValueError(f"steps {missing} are not Pythia checkpoints (0, 1, 2, 4, …, 512, then multiples of 1000 "
                         "up to 143000)")
    return [(name, f"step{step}") for step in chosen]


class HubCheckpoints:
    """Checkpoints of a model published with one revision per training step (Pythia: ``step1000`` …).

    Has the interface of :class:`stagewise.lm.TrainedRun` that the measurements use (``checkpoint_steps``,
    ``load(step)``, ``path`` for cached results), so :func:`~stagewise.lm.track_induction` and
    :func:`~stagewise.lm.class_influence` run on Pythia exactly as on a model trained here. Loading goes through
    ``from_pretrained(name, revision="step<k>")``: it needs network access, or the revisions already in the local
    Hugging Face cache (``HF_HUB_OFFLINE=1``).

    name:      hub name, e.g. "EleutherAI/pythia-14m".
    steps:     training steps to use (each one of :data:`PYTHIA_STEPS`).
    cache_dir: folder for results computed from these checkpoints.
    """

    def __init__(self, name: str, steps: Sequence[int], cache_dir: str | Path):
        self.name = name
        self.revisions = dict((int(rev[4:]), rev) for _, rev in pythia_checkpoints(name, steps))
        self.checkpoint_steps = sorted(self.revisions)
        self.path = Path(cache_dir) / name.replace("/", "--")
        self.path.mkdir(parents=True, exist_ok=True)

    def load(self, step: int) -> PreTrainedModel:
        if step not in self.revisions:
            raise KeyError(f"no checkpoint at step {step}; chosen steps: {self.checkpoint_steps}")
        # eager attention: the induction measurement reads the attention patterns
        return load_checkpoint(self.name, revision=self.revisions[step], attn_implementation="eager")

    def tokenizer(self, step: int | None = None):
        """The model's tokenizer (from the first chosen revision unless ``step`` is given)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.name, revision=self.revisions[step or self.checkpoint_steps[0]])
