"""lstm_np: a from-scratch, pure-NumPy peephole LSTM library."""
