"""lstm_np: a from-scratch, pure-NumPy peephole LSTM library with hand-written backpropagation."""
from .cell import LSTMCell
from .lstm import LSTM

__all__ = ["LSTMCell", "LSTM"]
