"""lstm_np: a from-scratch, pure-NumPy peephole LSTM and sequence-to-sequence library.

Every gate equation is written out in code, every gradient derived by hand and checked against finite
differences (see docs/design.md §1 and `python -m lstm_np.gradcheck`).
"""
from .attention import Attention
from .cell import LSTMCell, peephole_lr_scale
from .data import BOS, EOS, PAD, UNK, Vocab
from .layers import Embedding, Linear
from .losses import masked_cross_entropy
from .lstm import LSTM
from .optim import SGD, Adam, AdamW, clip_grad_norm
from .schedule import WarmupDecay
from .seq2seq import Seq2Seq

__version__ = "0.1.0"
__all__ = ["LSTMCell", "LSTM", "Seq2Seq", "Attention", "Embedding", "Linear", "masked_cross_entropy",
           "Adam", "AdamW", "SGD", "WarmupDecay", "clip_grad_norm", "peephole_lr_scale", "Vocab", "PAD", "BOS",
           "EOS", "UNK"]
