"""Argument checks shared by the modules of lstm_np: integers and numbers in a range, sizes, dtypes and finite
numeric arrays.

Each returns the checked value (converted where that is the point, e.g. a dtype object or a cast array) or
raises a ValueError/TypeError whose message names the argument and what was expected, so that a mistake
surfaces where it is made instead of as a numpy broadcast error or a silent wrong answer further on.
"""
import math

import numpy as np

__all__ = ["check_int", "check_number", "check_size", "check_dtype", "as_float_array"]


def _bounds(low, high, low_inclusive=True, high_inclusive=True):
    """The words of a range: ">= 0", "> 0", "in [0, 9]", "in [0, 1)", or "" for none."""
    if low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low}"
    if high is not None:
        return f"{'<=' if high_inclusive else '<'} {high}"
    return ""


def check_int(name, value, low=None, high=None):
    """`value` as an int if it is an integer (Python or numpy; bools excluded) in [low, high] (either bound
    None for none), else ValueError naming `name` and the range."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not (ok and (low is None or value >= low) and (high is None or value <= high)):
        raise ValueError(f"{name} must be an int {_bounds(low, high)}".rstrip() + f", got {value!r}")
    return int(value)


def check_number(name, value, low=None, high=None, low_inclusive=True, high_inclusive=True):
    """`value` as a float if it is a finite real number (int or float, Python or numpy; bools excluded) within
    the bounds (each None for none, inclusive unless told otherwise), else ValueError naming `name`."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        x = float(value)
        ok = (math.isfinite(x) and (low is None or (x >= low if low_inclusive else x > low))
              and (high is None or (x <= high if high_inclusive else x < high)))
    if not ok:
        bounds = _bounds(low, high, low_inclusive, high_inclusive)
        raise ValueError(f"{name} must be a finite number {bounds}".rstrip() + f", got {value!r}")
    return float(value)


def check_size(name, value):
    """`value` as an int if it is a positive integer (bools excluded), else ValueError naming `name`."""
    return check_int(name, value, low=1)


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
