"""The notebooks: each runs top to bottom on a fresh kernel and still shows, page for page, what it saved
(the comparison's rules are in tests/notebook_pages.py: measured numbers masked, figures counted, standard
error ignored); they cite only files the repository has; every chapter has an exercise with a verified solution;
and the helper modules they import (notebooks/show_code.py, diagrams.py, exercises.py, and the written
solutions in solutions.py) do what the notebooks say.

`make notebooks` re-executes them in place when a change to the code changes what they print.
"""
import glob
import os
import re
import sys

import matplotlib
import numpy as np
import nbformat
import pytest

import lstm_np as ln
import notebook_pages
from lstm_np.gradcheck import check_lstm

matplotlib.use("Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
sys.path.insert(0, NOTEBOOK_DIR)

import diagrams  # noqa: E402  (the notebooks' helpers live beside them)
import exercises  # noqa: E402
import solutions  # noqa: E402  (the "write the code" exercises' solutions, out of the chapters' sight)
from show_code import code_lines  # noqa: E402


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_and_shows_what_the_code_prints_today(path):
    saved = nbformat.read(path, as_version=4)
    fresh = notebook_pages.execute(path)           # raises, with the traceback, if a cell fails
    stale = notebook_pages.stale_cells(saved, fresh)
    assert not stale, (f"{os.path.basename(path)}: the saved outputs differ from a fresh run (re-execute with "
                       "`make notebooks` and commit them):\n\n" + "\n\n".join(stale))


# ---------------------------------------------------------------------------------------------------------
# the comparison itself
def notebook(*cells):
    """A notebook of code cells, each given as (outputs, tags)."""
    nb = nbformat.v4.new_notebook()
    for outputs, tags in cells:
        cell = nbformat.v4.new_code_cell("pass")
        cell.outputs = outputs
        cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def stdout(text):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


FIGURE = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})


def test_a_changed_number_is_not_a_stale_page_but_a_changed_word_is():
    saved = notebook(([stdout("loss 1.5468 | exact match 0.780\n")], ()))
    assert notebook_pages.stale_cells(saved, notebook(([stdout("loss   1.4e-3 | exact match 0.8\n")], ()))) == []
    stale = notebook_pages.stale_cells(saved, notebook(([stdout("loss 1.5468 | exact match 0.780 | BLEU 3\n")], ())))
    assert len(stale) == 1 and "cell 0" in stale[0] and "BLEU" in stale[0]


def test_printed_code_that_changed_makes_the_page_stale():
    saved = notebook(([stdout("lstm_np/cell.py:196 np.matmul(hc_prev, W_rec, out=work)\n")], ()))
    fresh = notebook(([stdout("lstm_np/cell.py:204 np.matmul(h_prev, W[\"W_h\"], out=work)\n")], ()))
    assert notebook_pages.stale_cells(saved, fresh)


def test_in_an_exact_cell_a_changed_line_number_makes_the_page_stale():
    saved = notebook(([stdout("lstm_np/cell.py:218  np.multiply(f, c_prev, out=c)\n")], ("exact",)))
    fresh = notebook(([stdout("lstm_np/cell.py:219  np.multiply(f, c_prev, out=c)\n")], ("exact",)))
    assert notebook_pages.stale_cells(saved, fresh)
    assert notebook_pages.stale_cells(saved, notebook(([stdout("lstm_np/cell.py:218 np.multiply(f, c_prev, out=c)\n")],
                                                       ("exact",)))) == []     # spacing aside


def test_output_split_differently_between_runs_is_the_same_page():
    saved = notebook(([stdout("step 200\n"), stdout("step 400\n")], ()))
    assert notebook_pages.stale_cells(saved, notebook(([stdout("step 200\nstep 400\n")], ()))) == []


def test_a_figure_that_disappears_makes_the_page_stale_but_its_pixels_do_not():
    other_pixels = nbformat.v4.new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})
    saved = notebook(([stdout("a\n"), FIGURE], ()))
    assert notebook_pages.stale_cells(saved, notebook(([stdout("a\n"), other_pixels], ()))) == []
    assert notebook_pages.stale_cells(saved, notebook(([stdout("a\n")], ())))


def test_standard_error_is_not_part_of_the_page():
    warning = nbformat.v4.new_output("stream", name="stderr", text="Matplotlib is building the font cache\n")
    assert notebook_pages.stale_cells(notebook(([stdout("a\n")], ())), notebook(([warning, stdout("a\n")], ()))) == []


def test_a_text_varies_cell_is_compared_by_its_kinds_of_output_only():
    saved = notebook(([stdout("| `abc` | `cba` | ✓ |\n")], ("text-varies",)))
    assert notebook_pages.stale_cells(saved, notebook(([stdout("| `abc` | `cbb` | ✗ |\n")], ("text-varies",)))) == []
    assert notebook_pages.stale_cells(saved, notebook(([stdout("x\n"), FIGURE], ("text-varies",))))


def test_a_needs_torch_cell_is_compared_only_where_torch_is_installed():
    saved = notebook(([stdout("max |lstm_np - torch| y 3.5e-17\n")], ("needs-torch",)))
    fresh = notebook(([stdout("torch is not installed: the comparison with torch.nn.LSTM is skipped\n")], ("needs-torch",)))
    assert notebook_pages.stale_cells(saved, fresh, torch_installed=False) == []
    assert notebook_pages.stale_cells(saved, fresh, torch_installed=True)


def test_a_cell_added_without_re_executing_makes_the_notebook_stale():
    saved = notebook(([stdout("a\n")], ()))
    assert notebook_pages.stale_cells(saved, notebook(([stdout("a\n")], ()), ([stdout("b\n")], ())))


def test_make_notebooks_rewrites_a_notebook_in_place_and_leaves_a_failing_one_untouched(tmp_path):
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    for path, source in [(good, "print(6 * 7)"), (bad, "raise ValueError('broken')")]:
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(source))
        nbformat.write(nb, str(path))
    notebook_pages.main([str(good)])
    assert nbformat.read(str(good), as_version=4).cells[0].outputs[0]["text"] == "42\n"
    before = bad.read_bytes()
    with pytest.raises(Exception, match="broken"):
        notebook_pages.main([str(bad)])
    assert bad.read_bytes() == before


# ---------------------------------------------------------------------------------------------------------
# what the notebooks hold
def saved_notebooks():
    return {os.path.basename(p): nbformat.read(p, as_version=4) for p in NOTEBOOKS}


def test_no_notebook_cites_a_file_missing_from_the_repository():
    link = re.compile(r"\]\(([^)#\s]+)")                     # markdown links, relative to notebooks/
    path = re.compile(r"\b(?:lstm_np|docs|notebooks|tests|benchmarks|data)/[\w/-]+\.(?:py|md|ipynb|tsv|png|json)\b")
    missing = []
    for name, nb in saved_notebooks().items():
        for cell in nb.cells:
            links = link.findall(cell.source) if cell.cell_type == "markdown" else []
            targets = [os.path.join(NOTEBOOK_DIR, target) for target in links if not target.startswith("http")]
            targets += [os.path.join(ROOT, p) for p in path.findall(cell.source)]
            missing += [f"{name}: {os.path.relpath(t, ROOT)}" for t in targets if not os.path.exists(os.path.normpath(t))]
    assert not missing, f"cited files that do not exist: {missing}"
    assert not any(re.search(r"DESIGN\.md|STYLE\.md", cell.source) for nb in saved_notebooks().values()
                   for cell in nb.cells), "a notebook cites DESIGN.md or STYLE.md (the repository has docs/design.md)"


def code_sources(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_every_chapter_has_an_exercise_and_every_exercise_a_verified_solution():
    """Each chapter has an exercise; each exercise's checker is either asserted on a solution at the end of
    its chapter, or is a "write the code" checker whose solution in notebooks/solutions.py the tests below
    run (and whose checking cell, in the saved chapter, still says "not answered yet": no solution was left
    in the stub)."""
    figures, exercise_headings, stubs = 0, [], []
    for name, nb in saved_notebooks().items():
        figures += sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))
        headings = [m for cell in nb.cells if cell.cell_type == "markdown"
                    for m in re.findall(r"^#+ (Exercise [\d.]+)", cell.source, flags=re.M)]
        assert headings, f"{name}: a chapter without an exercise"
        exercise_headings += headings
        asserted = {m for cell in code_sources(nb)
                    for m in re.findall(r"assert exercises\.(check_\w+)\(.*\) is True", cell.source)}
        for cell in code_sources(nb):
            for checker in re.findall(r"^exercises\.(check_\w+)\(", cell.source, flags=re.M):
                assert checker in asserted or checker in WRITTEN_SOLUTIONS, f"{name}: {checker} has no verified solution"
                if checker in WRITTEN_SOLUTIONS:
                    stubs.append(checker)
                    shown = "".join(out.get("text", "") for out in cell.get("outputs", []))
                    assert "not answered yet" in shown, f"{name}: the stub checked by {checker} is answered"
    assert figures >= 10, f"{figures} figures across the notebooks"
    assert len(set(exercise_headings)) >= 9, exercise_headings
    assert sorted(set(stubs)) == sorted(WRITTEN_SOLUTIONS), "a written solution with no stub in the chapters"


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
    """A right answer to Exercise 3.1 from the library's own backward, not from the notebook's solution."""
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


# ---------------------------------------------------------------------------------------------------------
# the "write the code" exercises: each solution (notebooks/solutions.py, out of the chapters' sight) passes
# its checker, and a copy with one typical mistake fails it with a message that names the mistake
WRITTEN_SOLUTIONS = {             # the checker of each "write the code" exercise -> the solution's functions
    "check_lstm_step_forward": (solutions.lstm_step_forward,),
    "check_lstm_step_backward": (solutions.lstm_step_forward, solutions.lstm_step_backward),
    "check_lstm_sequence": (solutions.lstm_forward, solutions.lstm_backward),
    "check_softmax_loss": (solutions.softmax_loss,),
    "check_welch_t": (solutions.welch_t,),
    "check_embedding_backward": (solutions.embedding_backward,),
}


@pytest.mark.parametrize("checker", WRITTEN_SOLUTIONS)
def test_each_written_solution_passes_its_checker(checker, capsys):
    assert getattr(exercises, checker)(*WRITTEN_SOLUTIONS[checker]) is True
    assert "right:" in capsys.readouterr().out


def test_the_step_forward_checker_passes_the_solution_and_names_h_when_the_output_peephole_is_missing(capsys):
    def without_output_peephole(x, h_prev, c_prev, P):
        return solutions.lstm_step_forward(x, h_prev, c_prev, dict(P, W_co=np.zeros_like(P["W_co"])))

    assert exercises.check_lstm_step_forward(solutions.lstm_step_forward) is True
    assert exercises.check_lstm_step_forward(without_output_peephole) is False
    out = capsys.readouterr().out
    assert "h_t differ from LSTMCell.forward" in out and "c_t        relative error against lstm_np" in out


def test_the_step_backward_checker_passes_the_solution_and_names_the_gradients_a_missing_term_breaks(capsys):
    def without_output_peephole_term(dh, dc, cache):
        P = cache[3]
        return solutions.lstm_step_backward(dh, dc, cache[:3] + (dict(P, W_co=np.zeros_like(P["W_co"])),) + cache[4:])

    assert exercises.check_lstm_step_backward(solutions.lstm_step_forward, solutions.lstm_step_backward) is True
    capsys.readouterr()
    assert exercises.check_lstm_step_backward(solutions.lstm_step_forward, without_output_peephole_term) is False
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert "∂L/∂c_prev" in verdict and "∂L/∂W_ci" in verdict and "∂L/∂W_xo" not in verdict, verdict
    assert exercises.check_lstm_step_backward(solutions.lstm_step_forward, lambda dh, dc, cache: ...) is None


def test_the_sequence_checker_passes_the_solution_and_fails_a_bptt_that_drops_the_cell_carry(capsys):
    def drops_dc_next(dhs, caches):
        dxs, grads, dh_next = [], {}, np.zeros_like(dhs[0])
        for t in reversed(range(len(dhs))):
            dx, dh_next, _, g = solutions.lstm_step_backward(dhs[t] + dh_next, np.zeros_like(dh_next), caches[t])
            dxs.append(dx)
            grads = {k: grads.get(k, 0) + v for k, v in g.items()}
        return np.stack(dxs[::-1]), dh_next, np.zeros_like(dh_next), grads

    assert exercises.check_lstm_sequence(solutions.lstm_forward, solutions.lstm_backward) is True
    capsys.readouterr()
    assert exercises.check_lstm_sequence(solutions.lstm_forward, drops_dc_next) is False
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert "∂L/∂c0" in verdict and "∂L/∂W_xi" in verdict


def test_the_softmax_loss_checker_passes_the_solution_and_fails_an_unmasked_mean_or_gradient(capsys):
    def mean_over_all_positions(logits, targets, mask):
        loss, dlogits = solutions.softmax_loss(logits, targets, mask)
        return loss * mask.sum() / mask.size, dlogits

    def unmasked_gradient(logits, targets, mask):
        return solutions.softmax_loss(logits, targets, mask)[0], solutions.softmax_loss(logits, targets, mask | True)[1]

    assert exercises.check_softmax_loss(solutions.softmax_loss) is True
    assert exercises.check_softmax_loss(mean_over_all_positions) is False
    assert "divide by mask.sum()" in capsys.readouterr().out
    assert exercises.check_softmax_loss(unmasked_gradient) is False
    out = capsys.readouterr().out
    assert "∂L/∂logits disagree" in out and "padded positions must get a zero gradient" in out


def test_the_welch_checker_passes_the_solution_and_fails_the_pooled_degrees_of_freedom(capsys):
    def pooled_df(a, b):
        return solutions.welch_t(a, b)[0], len(a) + len(b) - 2

    assert exercises.check_welch_t(solutions.welch_t) is True
    assert exercises.check_welch_t(pooled_df) is False
    assert "df is off" in capsys.readouterr().out
    assert exercises.check_welch_t(lambda a, b: (-solutions.welch_t(a, b)[0], solutions.welch_t(a, b)[1])) is False


def test_the_embedding_checker_passes_the_scatter_add_and_fails_fancy_indexing_that_drops_repeats(capsys):
    def fancy_indexing(dout, ids, V):
        dW = np.zeros((V, dout.shape[-1]))
        dW[ids.reshape(-1)] += dout.reshape(-1, dout.shape[-1])     # repeated ids: only one write survives
        return dW

    assert exercises.check_embedding_backward(solutions.embedding_backward) is True
    assert exercises.check_embedding_backward(fancy_indexing) is False
    assert "rows [1, 4] are off" in capsys.readouterr().out


def test_a_code_checker_reports_a_readers_exception_instead_of_raising(capsys):
    assert exercises.check_lstm_step_forward(lambda x, h, c, P: x @ P["W_hi"]) is False
    assert "raised ValueError" in capsys.readouterr().out
