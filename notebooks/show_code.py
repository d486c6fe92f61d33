"""Printing lstm_np's own code in the notebooks, read from the installed library when the notebook runs, so
that a page never shows code that no longer exists.

    code_lines(LSTMCell.step_forward, r"c_t = f_t", r"\\+ i_t ⊙ c~_t")

prints the lines of `LSTMCell.step_forward` from the first line matching the first pattern (a regular
expression, searched anywhere in the line) through the first line from there on matching the second, each
after its file and line number; `code_lines(function)` prints the whole function. A pattern that matches no
line raises LookupError: the notebook names code that has changed, and running it fails.
"""
import inspect
import os
import re
import textwrap


def code_lines(function, first=None, last=None):
    """Print lines of `function`'s source: all of it, or from the line matching `first` through the next one
    matching `last` (default: the `first` line alone)."""
    lines, start = inspect.getsourcelines(function)
    begin = 0 if first is None else _find(lines, first, 0, function)
    end = len(lines) - 1 if first is None else begin if last is None else _find(lines, last, begin, function)
    path = _package_path(inspect.getsourcefile(function))
    block = textwrap.dedent("".join(lines[begin:end + 1])).splitlines()
    for n, line in enumerate(block, start=start + begin):
        print(f"{path}:{n:<4} {line}")


def _find(lines, pattern, begin, function):
    """Index of the first line at or after `begin` that matches `pattern`."""
    for n in range(begin, len(lines)):
        if re.search(pattern, lines[n]):
            return n
    raise LookupError(f"no line of {function.__qualname__} from its line {begin + 1} on matches {pattern!r}: "
                      "the notebook names code that has changed")


def _package_path(filename):
    """'lstm_np/cell.py' for .../lstm_np/cell.py: the path inside the repository."""
    return os.path.join(os.path.basename(os.path.dirname(filename)), os.path.basename(filename))
