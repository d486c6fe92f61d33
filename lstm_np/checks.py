"""Argument checks shared by the modules of lstm_np: sizes, dtypes and finite numeric arrays.

Each returns the checked value (converted where that is the point, e.g. a dtype object or a cast array) or
raises a ValueError/TypeError whose message names the argument and what was expected, so that a mistake
surfaces where it is made instead of as a numpy broadcast error or a silent wrong answer further on.
"""
import numpy as np

__all__ = ["check_size", "check_dtype", "as_float_array"]


def check_size(name, value):
    """`value` as an int if it is a positive integer (bools excluded), else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dtype(dtype):
    """Return np.dtype(dtype) if it is float32 or float64, else raise TypeError naming `dtype`."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dt}")
    return dt


def as_float_array(name, value, dtype, shape=None):
    """`value` as a finite array of `dtype`; TypeError for non-numeric input, ValueError for bad shape/NaN/Inf.

    `shape` may contain None for "any size" in that axis.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr
