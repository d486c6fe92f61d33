"""The helper modules the notebooks import (notebooks/show_code.py, diagrams.py, exercises.py) do what the
notebooks say."""
import os
import re
import sys

import matplotlib
import numpy as np
import pytest

import lstm_np as ln
from lstm_np.gradcheck import check_lstm

matplotlib.use("Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
sys.path.insert(0, NOTEBOOK_DIR)

import diagrams  # noqa: E402  (the notebooks' helpers live beside them)
import exercises  # noqa: E402
from show_code import code_lines  # noqa: E402


# ---------------------------------------------------------------------------------------------------------
# notebooks/show_code.py
def test_code_lines_prints_the_lines_between_two_patterns_with_their_file_and_number(capsys):
    code_lines(ln.LSTMCell.step_forward, r"# c_t = f_t ⊙ c_\{t-1\}", r"\.\.\. \+ i_t ⊙ c~_t")
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3
    source = open(os.path.join(ROOT, "lstm_np", "cell.py"), encoding="utf-8").read().splitlines()
    for line in printed:
        path, number, text = re.match(r"(\S+):(\d+)\s+(.*)", line).groups()
        assert path == "lstm_np/cell.py" and source[int(number) - 1].strip() == text.strip()
    assert "c_t = f_t" in printed[0] and "+ i_t ⊙ c~_t" in printed[-1]


def test_code_lines_without_patterns_prints_the_whole_function(capsys):
    code_lines(ln.LSTMCell.zero_grad)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split(None, 1)[1].startswith("def zero_grad(self):") and "fill(0)" in printed


def test_code_lines_names_code_that_no_longer_exists():
    with pytest.raises(LookupError, match="hc_prev"):
        code_lines(ln.LSTMCell.step_forward, r"hc_prev")
    with pytest.raises(LookupError, match="no such line"):
        code_lines(ln.LSTMCell.step_forward, r"c_t = f_t", r"no such line")


# ---------------------------------------------------------------------------------------------------------
# notebooks/diagrams.py
@pytest.mark.parametrize("peephole", ["full", "diagonal", "none"])
def test_the_cell_diagram_is_the_documented_equations(peephole):
    """Walking the drawn graph computes what LSTMCell.forward computes, with every weight drawn once."""
    rng = np.random.default_rng(0)
    cell = ln.LSTMCell(3, 4, peephole=peephole, dtype=np.float64, seed=0)
    for _, value, _ in cell.named_parameters():
        value[...] = rng.normal(0, 0.5, size=value.shape)
    x, h_prev, c_prev = rng.normal(size=(5, 3)), rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    graph = diagrams.cell_graph(peephole)
    h, c = diagrams.evaluate_cell(graph, cell.equation_params(), x, h_prev, c_prev)
    h_lib, c_lib = cell.forward(x, h_prev, c_prev)
    assert np.allclose(h, h_lib, rtol=0, atol=1e-14) and np.allclose(c, c_lib, rtol=0, atol=1e-14)
    weights = sorted(e.weight for e in graph[1] if e.weight)
    assert weights == sorted(k for k in cell.equation_params() if k.startswith("W_"))
    assert all(e.back for e in graph[1]), "every edge says what the gradient picks up along it"


def test_the_diagram_has_the_output_gate_read_the_new_cell_state():
    nodes, edges = diagrams.cell_graph("full")
    sources = {e.weight: e.src for e in edges if e.weight}
    assert sources["W_co"] == "c" and {sources[w] for w in ("W_ci", "W_cf", "W_cc")} == {"c_prev"}
    assert [e.src for e in edges if e.dst == "c"] == ["fc", "ig"]   # c_t = f_t ⊙ c_{t-1} + i_t ⊙ c~_t


def test_a_diagram_that_misdraws_a_connection_fails_the_check():
    nodes, edges = diagrams.cell_graph("full")
    moved = [diagrams.Edge("c_prev", "o", "W_co", kind="c") if e.weight == "W_co" else e for e in edges]
    cell = ln.LSTMCell(2, 3, peephole="full", dtype=np.float64, seed=1)
    rng = np.random.default_rng(1)
    x, h_prev, c_prev = rng.normal(size=(2, 2)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    h, _ = diagrams.evaluate_cell((nodes, moved), cell.equation_params(), x, h_prev, c_prev)
    assert not np.allclose(h, cell.forward(x, h_prev, c_prev)[0], atol=1e-6)


def test_the_diagrams_draw():
    import matplotlib.pyplot as plt
    for backward in (False, True):
        fig = diagrams.cell_figure("full", backward=backward)
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert any("W_{co}" in t for t in texts) and any("W_{cc}" in t for t in texts)
        plt.close(fig)
    fig, ax = plt.subplots()
    alpha = np.full((4, 4), 0.25)                   # "abc" -> "cba": 3 tokens and <eos> each way
    diagrams.draw_seq2seq(ax, "abc", "cba", alpha, step=1)
    texts = [t.get_text() for t in ax.texts]
    assert {"a", "b", "c", "<eos>", "<bos>"} <= set(texts) and texts.count("0.25") == 4
    with pytest.raises(ValueError, match="alpha must have one row per output token"):
        diagrams.draw_seq2seq(ax, "abc", "cba", alpha[:3], step=1)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# notebooks/exercises.py: the checking cells say "not answered", "not right yet" or "right"
def test_the_forget_bias_checker_tells_right_from_wrong(capsys):
    measured = {0.0: 0.505, 1.0: 0.730, 3.0: 0.954}
    assert exercises.check_forget_bias_prediction(lambda b_f: ..., measured) is None
    assert "not answered" in capsys.readouterr().out
    assert exercises.check_forget_bias_prediction(lambda b_f: measured[b_f] * 1.01, measured) is True
    assert exercises.check_forget_bias_prediction(lambda b_f: 0.73, measured) is False
    assert "not right yet" in capsys.readouterr().out


def library_diagonal_backward(P, x, h_prev, c_prev, g_h, g_c):
    """A right answer to Exercise 2 from the library's own backward, not from the notebook's solution."""
    cell = ln.LSTMCell(len(x), len(h_prev), peephole="diagonal", dtype=np.float64)
    for name, value in cell.equation_params().items():
        value[...] = P[name]
    cell.forward(x[None], h_prev[None], c_prev[None])
    _, _, dc_prev = cell.backward(g_h[None], g_c[None])
    grads = cell.equation_grads()
    return {"c_prev": dc_prev[0], "W_ci": grads["W_ci"], "W_cf": grads["W_cf"], "W_co": grads["W_co"]}


def test_the_diagonal_backward_checker_tells_right_from_wrong(capsys):
    def stub(P, x, h_prev, c_prev, g_h, g_c):
        ...

    def forgot_w_co(P, x, h_prev, c_prev, g_h, g_c):
        answer = library_diagonal_backward(P, x, h_prev, c_prev, g_h, g_c)
        return dict(answer, W_co=answer["W_co"] * 0.5)

    assert exercises.check_diagonal_backward(stub) is None
    assert exercises.check_diagonal_backward(library_diagonal_backward) is True
    assert exercises.check_diagonal_backward(forgot_w_co) is False
    assert "∂L/∂W_co disagree" in capsys.readouterr().out
    assert exercises.check_diagonal_backward(lambda *args: {"c_prev": np.zeros(3)}) is False
    assert exercises.check_diagonal_backward(lambda *args: {k: np.zeros((3, 3)) for k in exercises.DIAGONAL_GRADIENTS}) is False


def test_the_missing_w_co_checker_tells_right_from_wrong(capsys):
    right_t1 = {"W_xo", "W_ho", "W_co", "b_o"}
    assert exercises.check_missing_W_co_prediction(..., set()) is None
    assert exercises.check_missing_W_co_prediction(right_t1, set()) is True
    assert exercises.check_missing_W_co_prediction(right_t1 | {"b_i"}, set()) is False
    assert "mispredicted b_i at T=1" in capsys.readouterr().out
    assert exercises.check_missing_W_co_prediction({"W_oo"}, set()) is False


def test_removing_the_output_peephole_term_breaks_the_backward_only_inside_the_block():
    def worst():
        return max(check_lstm("full", T=2).values())

    with exercises.output_peephole_term_removed():
        broken = worst()
    assert broken > 1e-3 and worst() < 1e-7                 # the library's own backward is back
    with pytest.raises(RuntimeError), exercises.output_peephole_term_removed():
        raise RuntimeError
    assert worst() < 1e-7                                   # ... also after an exception in the block
