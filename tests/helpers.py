"""Helpers shared by the test modules (no test module imports from another).

Command lines: `cli(args, cwd)` runs `python -m lstm_np ARGS` in a subprocess (`start`/`finish` split it, `cli_many`
runs several side by side); `ok` and `one_line_error` check how it ended; `make_data` writes a small TSV task;
TINY_FLAGS makes a trained model tiny (these tests prove plumbing, never quality).
Models: `make_model` builds a tiny float64 Seq2Seq with random nonzero weights for the batches SRC/TGT, and
`assert_loss_grads_match_finite_differences` checks its backward.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lstm_np.gradcheck import check_gradients
from lstm_np.seq2seq import Seq2Seq

# ----------------------------------------------------------------------------- the command line
CLI = [sys.executable, "-m", "lstm_np"]
TINY_FLAGS = ["--hidden-size", "8", "--embed-size", "8", "--batch-size", "8", "--log-every", "5"]
TIMEOUT = 120
PARALLEL = 4   # commands run side by side by cli_many
ENV = dict(os.environ, PYTHONIOENCODING="utf-8")


def reverse_pairs(n, seed):
    """n (source, reversed source) pairs of letters a-e, lengths 1-5, from a seeded generator."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcde"), size=rng.integers(1, 6))) for _ in range(n)]
    return [(w, w[::-1]) for w in words]


def write_tsv(path, pairs):
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def make_data(folder):
    """A.tsv (60 training pairs) and B.tsv (10 test pairs) in `folder`."""
    write_tsv(folder / "A.tsv", reverse_pairs(60, seed=0))
    write_tsv(folder / "B.tsv", reverse_pairs(10, seed=1))


def start(args, cwd):
    return subprocess.Popen(CLI + [str(a) for a in args], cwd=cwd, env=ENV, encoding="utf-8",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, stdin=None):
    out, err = proc.communicate(stdin, timeout=TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(args, cwd, stdin=None):
    """Run `python -m lstm_np ARGS` in `cwd`; the CompletedProcess (text stdout/stderr)."""
    return finish(start(args, cwd), stdin)


def cli_many(jobs, cwd):
    """Run several `python -m lstm_np` commands side by side: {key: args} -> {key: CompletedProcess}."""
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {key: pool.submit(cli, args, cwd) for key, args in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def one_line_error(result, *needles, code=2):
    """Assert a failed command reported exactly one non-empty stderr line, no traceback; return that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, f"exit {result.returncode}, expected {code}; stderr: {result.stderr!r}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {result.stderr!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in the error line {lines[0]!r}"
    return lines[0]


def load_metrics(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- tiny models
SRC_V, TGT_V = 7, 6
# Padded batches with a different length in every row (a full row, short rows, a bare EOS target).
SRC = np.array([[4, 5, 6, 2],
                [5, 2, 0, 0],
                [6, 3, 2, 0]])
TGT = np.array([[4, 5, 2],
                [5, 2, 0],
                [2, 0, 0]])
EPS, TOL = 1e-4, 1e-6   # see the note in assert_loss_grads_match_finite_differences


def randomize(model, rng, scale=0.5):
    """Random weights everywhere (PAD embedding rows included: padding must not leak, zero or not)."""
    for _, value, _ in model.named_parameters():
        value[...] = rng.normal(0.0, scale, size=value.shape)


def make_model(peephole="full", num_layers=1, bidirectional=False, attention=None, seed=0, size=3,
               dtype=np.float64, **kwargs):
    """A tiny float64 Seq2Seq with random nonzero weights (embed_size = hidden_size = size)."""
    model = Seq2Seq(SRC_V, TGT_V, embed_size=size, hidden_size=size, num_layers=num_layers, peephole=peephole,
                    bidirectional=bidirectional, attention=attention, dtype=dtype, seed=seed, **kwargs)
    randomize(model, np.random.default_rng(seed))
    return model


def copy_weights(dst, src):
    for (name, v_dst, _), (name_src, v_src, _) in zip(dst.named_parameters(), src.named_parameters()):
        assert name == name_src
        v_dst[...] = v_src


def grads_of(model, src, tgt):
    """(loss, {name: grad}) of one fresh loss/backward."""
    model.zero_grad()
    loss = model.loss(src, tgt)
    model.backward()
    return loss, {name: g.copy() for name, _, g in model.named_parameters()}


def assert_loss_grads_match_finite_differences(model, src, tgt):
    """Central differences over EVERY element of every named parameter, relative error per name.

    eps = 1e-4, not 1e-6: some gradients of the mean cross-entropy are tiny (Bahdanau's W_q ~1e-5 in norm),
    and with eps = 1e-6 the rounding noise of the loss divided by 2 eps alone gives relative errors ~1e-5.
    At 1e-4 the O(eps²) truncation error stays ~1e-8, and a wrong backward still gives 1e-2 or more.
    """
    _, analytic = grads_of(model, src, tgt)
    arrays = {name: value for name, value, _ in model.named_parameters()}
    errors = check_gradients(lambda: model.loss(src, tgt), arrays, analytic, EPS)
    bad = {name: f"{err:.2e}" for name, err in errors.items() if not err <= TOL}
    assert not bad, f"relative error above {TOL} for: {bad}"
    assert set(errors) == set(arrays), "every named parameter must be checked"
    unused = [name for name, g in analytic.items() if not np.any(g)]
    assert not unused, f"parameters that never reach the loss (a check of zeros proves nothing): {unused}"
