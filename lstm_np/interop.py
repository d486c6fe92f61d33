"""Weights to and from torch.nn.LSTM. lstm_np's plain LSTM (peephole="none") computes the same function, so
the conversion is exact.

torch.nn.LSTM computes, for each layer and direction,

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,    h_t = o_t ⊙ tanh(c_t)

These are the documented equations without peepholes, with g_t = c~_t. torch stacks the gates in the order
[i, f, g, o], the order of lstm_np's fused columns [i, f, c~, o], so a layer's parameters map as whole
matrices, only transposed (torch keeps them in equation orientation, lstm_np in GEMM orientation):

    torch.nn.LSTM (layer k, sfx "" or "_reverse")      lstm_np (lstm.cell(k, direction).params)
    weight_ih_l{k}{sfx}   (4H, D_in)                   W_x.T      W_x (D_in, 4H)
    weight_hh_l{k}{sfx}   (4H, H)                      W_h.T      W_h (H, 4H)
    bias_ih_l{k}{sfx} + bias_hh_l{k}{sfx}   (4H,)      b          b   (4H,)

torch's two biases only ever appear as their sum, so `from_torch` adds them (in float64, rounded once to the
target dtype) and `to_torch` puts all of b in bias_ih and zeros in bias_hh. Each of torch's biases then
gets ∂L/∂b as its gradient.

Both sides agree on the rest of the interface: time-major x (T, B, D), state index
k = layer * num_directions + direction, dropout on the input of every layer but the first in training mode,
and lstm_np's `lengths` act as torch's packed sequences. Dropout masks come from different random
generators, so with dropout > 0 in training mode the two modules compute the same function of different
masks. The `training` flag is copied across.

Refused, with a ValueError saying why: peephole LSTMs ("full", "diagonal": torch.nn.LSTM has no peephole
connections), and modules with proj_size > 0, bias=False or batch_first=True (lstm_np has no projection, always
trains its biases, and is time-major: see `from_torch` for how to convert such a module's weights).

torch is imported when one of these functions runs, never by `import lstm_np`: it is an optional extra
(`pip install "lstm_np[torch]"`).
"""
import numpy as np

from .cell import as_float_array, check_dtype
from .lstm import LSTM

DIRECTION_SUFFIXES = ("", "_reverse")   # torch's name suffix for direction 0 and 1

# Why a peephole LSTM has no torch.nn.LSTM equivalent, per variant.
_PEEPHOLE_TERMS = {
    "full": "its gates read the cell state through the (H, H) peephole matrices W_ci, W_cf, W_cc, W_co",
    "diagonal": "its gates i, f, o read the cell state through the peephole vectors w_ci, w_cf, w_co",
}


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("lstm_np.interop needs PyTorch, an optional extra: pip install \"lstm_np[torch]\"") from e
    return torch


def torch_parameter_names(layer, direction):
    """torch.nn.LSTM's names of one layer and direction's parameters: weight_ih, weight_hh, bias_ih, bias_hh,
    e.g. ("weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse")."""
    suffix = f"_l{layer}{DIRECTION_SUFFIXES[direction]}"
    return tuple(kind + suffix for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def to_torch(lstm):
    """A torch.nn.LSTM computing the same function as `lstm`, an lstm_np LSTM with peephole="none".

    Same input_size, hidden_size, num_layers, bidirectional, dropout, training flag and dtype (float32 or
    float64), batch_first=False; the module is on the CPU and owns copies of the weights (mapping in the module
    docstring). Raises TypeError if `lstm` is not an lstm_np.LSTM and ValueError for a peephole LSTM.
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm must be an lstm_np.LSTM, got {type(lstm).__name__}")
    if lstm.peephole != "none":
        raise ValueError(f"lstm has peephole={lstm.peephole!r}: {_PEEPHOLE_TERMS[lstm.peephole]}, and "
                         "torch.nn.LSTM has no peephole connections, so no torch.nn.LSTM computes its function. "
                         "Only peephole=\"none\" LSTMs convert.")
    torch = _import_torch()
    H, tdtype = lstm.hidden_size, getattr(torch, lstm.dtype.name)
    module = torch.nn.LSTM(lstm.input_size, H, num_layers=lstm.num_layers, bias=True, batch_first=False,
                           dropout=lstm.dropout, bidirectional=lstm.bidirectional, dtype=tdtype)
    state = {}
    for layer in range(lstm.num_layers):
        for direction in range(lstm.num_directions):
            P = lstm.cell(layer, direction).params
            w_ih, w_hh, b_ih, b_hh = torch_parameter_names(layer, direction)
            state[w_ih] = torch.from_numpy(P["W_x"].T.copy())      # W_ih = W_xᵀ                       (4H, D_in)
            state[w_hh] = torch.from_numpy(P["W_h"].T.copy())      # W_hh = W_hᵀ                       (4H, H)
            state[b_ih] = torch.from_numpy(P["b"].copy())          # b_ih + b_hh = b                   (4H,)
            state[b_hh] = torch.zeros(4 * H, dtype=tdtype)
    module.load_state_dict(state)   # strict: exactly torch's names, every shape checked
    return module.train(lstm.training)


def from_torch(module, dtype=None, seed=0):
    """An lstm_np LSTM (peephole="none") computing the same function as `module`, a torch.nn.LSTM.

    dtype: np.float32 or np.float64; None takes the module's (which must then be float32 or float64).
    seed:  for the LSTM's dropout masks (torch's generator state does not carry over).
    Same sizes, layers, directions, dropout and training flag; the weights are copied (any device), torch's
    two biases summed into lstm_np's one. Raises TypeError if `module` is not a torch.nn.LSTM or its dtype is
    not one lstm_np runs, and ValueError for what lstm_np's LSTM lacks: proj_size > 0, bias=False, and
    batch_first=True. The weights do not depend on batch_first, so such a module converts after
    `module.batch_first = False`; the LSTM then reads time-major x, i.e. the batch-first x.transpose(1, 0, 2).
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
    if module.proj_size > 0:
        raise ValueError(f"module has proj_size={module.proj_size}: its h_t is projected to proj_size units by a "
                         "further matrix, which lstm_np's LSTM does not have")
    if not module.bias:
        raise ValueError("module has bias=False: lstm_np's LSTM always has biases (and an optimizer would "
                         "train them), so it would not stay the same model")
    if module.batch_first:
        raise ValueError("module has batch_first=True, but lstm_np's LSTM is time-major (x is (T, B, D)) and "
                         "would read a batch-first array with its axes swapped. The weights do not depend on "
                         "batch_first: set module.batch_first = False to convert, and feed the LSTM "
                         "x.transpose(1, 0, 2)")
    L, nd = module.num_layers, 2 if module.bidirectional else 1
    weights = {name: getattr(module, name) for layer in range(L) for direction in range(nd)
               for name in torch_parameter_names(layer, direction)}
    found = {w.dtype for w in weights.values()}
    if not all(d.is_floating_point for d in found):
        raise TypeError(f"module: its parameters must be real floating point, got {sorted(map(str, found))}")
    if dtype is None:
        if found not in ({torch.float32}, {torch.float64}):
            raise TypeError(f"dtype: the module's parameters are {sorted(map(str, found))}, lstm_np runs float32 "
                            "or float64; pass dtype=np.float32 or dtype=np.float64 to convert")
        dtype = str(found.pop()).removeprefix("torch.")
    dtype = check_dtype(dtype)
    lstm = LSTM(module.input_size, module.hidden_size, num_layers=L, peephole="none",
                bidirectional=module.bidirectional, dropout=module.dropout, dtype=dtype, seed=seed)
    H = lstm.hidden_size
    for layer in range(L):
        for direction in range(nd):
            cell = lstm.cell(layer, direction)
            names = torch_parameter_names(layer, direction)
            # float64 holds every float32/float16/bfloat16 value exactly: one rounding, to `dtype`, at the end
            w_ih, w_hh, b_ih, b_hh = (weights[n].detach().to("cpu", torch.float64).numpy() for n in names)
            P = cell.params
            P["W_x"][...] = as_float_array(f"module.{names[0]}", w_ih, np.float64, (4 * H, cell.input_size)).T
            P["W_h"][...] = as_float_array(f"module.{names[1]}", w_hh, np.float64, (4 * H, H)).T
            P["b"][...] = as_float_array(f"module.{names[2]} + module.{names[3]}", b_ih + b_hh, np.float64, (4 * H,))
    return lstm.train(module.training)
