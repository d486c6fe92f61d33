"""The configuration of a training run: TrainConfig (every option of `lstm-np train`, with its default), how a new
run's options are checked, and how a saved run's configuration reads back.

Light on purpose (dataclasses and numpy only): the command line, the sweep and the trainer all build one.
"""
import dataclasses
import os
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_SECONDS = 180.0   # the time budget of a run given neither --steps, --epochs nor --max-seconds


class ConfigError(ValueError):
    """Options that do not describe a training run; the message names the flag."""


@dataclass
class TrainConfig:
    # data
    task: str = None              # a built-in task name, or None to read --train
    train: str = None             # TSV of source<TAB>target lines
    valid: str = None             # held-out TSV; without it, `valid_fraction` of --train is held out
    test: str = None              # test TSV; built-in tasks have their own test split
    tokens: str = "char"          # "char" or "word" tokens on both sides (built-in tasks are char-level)
    src_tokens: str = None        # the source side's token unit; None: `tokens`
    tgt_tokens: str = None        # the target side's token unit; None: `tokens` (G2P: letters in, phone words out)
    lower: bool = False           # lower-case text before tokenizing
    valid_fraction: float = 0.05  # share of --train sources (at most 2000) held out when --valid is absent
    # model
    embed_size: int = 64          # token embedding size
    hidden_size: int = 128        # LSTM units per layer and direction
    layers: int = 1               # LSTM layers in encoder and decoder
    peephole: str = "full"        # "full", "diagonal" or "none" (docs/design.md §1)
    peephole_init: str = "zero"   # peephole weights start at "zero" (the recipe: docs/design.md §7) or "uniform"
    bidirectional: bool = False   # bidirectional encoder
    dropout: float = 0.0          # dropout between stacked LSTM layers
    embed_dropout: float = 0.0    # dropout on the source and target embeddings
    output_dropout: float = 0.0   # dropout on the output layer's input
    attention: str = "luong"      # "none", "luong", "luong-general" or "bahdanau"
    peeky: bool = True            # feed the encoder's summary to every decoder step (with or without attention)
    output_bias: str = "prior"    # output bias starts at the targets' log-frequencies ("prior", Seq2Seq.init_output_bias)
                                  # or "uniform" like the other weights
    reverse_source: bool = None   # encoder reads the source reversed; None: yes unless bidirectional
    dtype: str = "float32"        # parameter and activation precision
    # optimisation
    lr: float = 1e-2              # Adam peak learning rate
    batch_size: int = 64          # sentence pairs per step
    clip: float = 5.0             # global gradient-norm clipping threshold
    label_smoothing: float = 0.0  # targets (1 - ε) the true token + ε spread over the vocabulary (losses.py); 0: none
    weight_decay: float = 0.0     # L2 penalty folded into the gradient (torch's Adam)
    warmup_steps: int = 30        # linear warm-up from lr/warmup_steps to lr
    peephole_lr_scale: float = 0.1  # the peephole weights step at lr × this (the recipe: docs/design.md §7)
    combine_lr_scale: float = 1.0   # attention's h~ = tanh(W_c [ctx ; h]) steps at lr × this (seq2seq.combine_lr_scale)
    decay_steps: int = None       # horizon of the cosine decay; None: fitted to --max-seconds, else constant
    final_lr_fraction: float = 0.1  # the decay ends at lr × this, and the learning rate stays there
    average_decay: float = 0.0    # keep an average of the weights with this decay (optim.WeightAverage), 0: none;
                                  # the final evaluation tests it when it validates better than the others
    # how long
    steps: int = None             # stop after this many optimizer steps in all (counting resumed ones)
    epochs: int = None            # stop after this many passes over the training data
    max_seconds: float = None     # stop after this much training time (this run)
    stop_at: float = None         # stop at the first validation point whose exact match reaches this
    # bookkeeping
    seed: int = 0                 # seeds the weights, the data order, dropout and held-out splits
    split_seed: int = None        # seeds the held-out split alone; None: `seed` (an ensemble's members share one)
    eval_every: int = None        # validate and checkpoint every N steps; None: a tenth of --max-seconds, else 250
    valid_size: int = 500         # held-out pairs validated during training (the first ones of the split)
    log_every: int = 50           # one log line every N steps
    beam_size: int = 1            # beam width for the final test evaluation
    out: str = None               # checkpoint directory
    metrics_out: str = None       # JSON file for the final metrics

    @classmethod
    def saved(cls, fields):
        """The TrainConfig of a saved run. Fields it lacks (added to lstm_np after it was saved) take the values
        that run trained with, not today's defaults, so that resuming it continues the same training."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**FIELDS_BEFORE_THEY_EXISTED, **{k: v for k, v in fields.items() if k in known}})

    def side_tokens(self):
        """(source, target) token units: each side's own setting, else `tokens`."""
        return self.src_tokens or self.tokens, self.tgt_tokens or self.tokens

    def held_out_seed(self):
        """The seed that draws the held-out validation sources out of --train: split_seed, else seed; None
        when no split is drawn (a built-in task's splits, or --valid FILE)."""
        if self.task is not None or self.valid is not None:
            return None
        return self.seed if self.split_seed is None else self.split_seed

    def model_kwargs(self):
        return dict(embed_size=self.embed_size, hidden_size=self.hidden_size, num_layers=self.layers,
                    peephole=self.peephole, bidirectional=self.bidirectional, dropout=self.dropout,
                    attention=None if self.attention == "none" else self.attention, peeky=self.peeky,
                    reverse_source=(not self.bidirectional) if self.reverse_source is None else self.reverse_source,
                    dtype=np.dtype(self.dtype), seed=self.seed, peephole_init=self.peephole_init,
                    embed_dropout=self.embed_dropout, output_dropout=self.output_dropout)


# the behaviour of runs saved before these TrainConfig fields existed
FIELDS_BEFORE_THEY_EXISTED = {"peephole_init": "uniform", "peephole_lr_scale": 1.0, "valid_size": 2000,
                              "output_bias": "uniform"}


def new_run_config(given):
    """TrainConfig of a new run from the given options (data paths already absolute); ConfigError if they do not
    describe one."""
    if ("task" in given) == ("train" in given):
        raise ConfigError("give exactly one of --task NAME or --train FILE")
    if "train" not in given and ("valid" in given or "test" in given):
        raise ConfigError("--valid and --test go with --train FILE (built-in tasks have their own splits)")
    if "split_seed" in given and "train" in given and "valid" in given:
        raise ConfigError("--split-seed draws the held-out pairs out of --train; with --valid FILE none are drawn")
    if "split_seed" in given and "task" in given:
        raise ConfigError("--split-seed goes with --train FILE (built-in tasks have their own splits)")
    cfg = TrainConfig(**given)
    if cfg.task is not None and cfg.side_tokens() != ("char", "char"):
        flag = next(f"--{k.replace('_', '-')} {given[k]}" for k in ("tokens", "src_tokens", "tgt_tokens")
                    if given.get(k, "char") != "char")
        raise ConfigError(f"built-in tasks are character-level; {flag} does not apply")
    return with_a_limit(cfg)


def with_a_limit(cfg):
    """cfg, with the default time budget if nothing else says when it stops."""
    if cfg.steps is None and cfg.epochs is None and cfg.max_seconds is None:
        cfg.max_seconds = DEFAULT_MAX_SECONDS
    return cfg


def data_name(cfg):
    """What a run's default folder is named after: the task, or the training file's name."""
    return cfg.task or os.path.splitext(os.path.basename(cfg.train))[0]
