"""The figures draw what they say: read back through matplotlib's objects (lines, bands, bars, images, tick
labels), never through the size of the file they were saved in."""
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lstm_np.data import Vocab  # noqa: E402
from lstm_np.plot import plot_attention, plot_sweep  # noqa: E402
from lstm_np.study import t975  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures the plotting functions save, kept for inspection (pyplot's close() leaves them readable)."""
    saved, savefig = [], Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return savefig(fig, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def curve(*points):
    """A learning curve from (seconds, exact match) points, 10 steps apart."""
    return [{"step": 10 * (k + 1), "seconds": s, "exact_match": e} for k, (s, e) in enumerate(points)]


def row(peephole, seed, em, status="ok", task="copy"):
    return {"task": task, "peephole": peephole, "seed": str(seed), "status": status, "test_exact_match": str(em)}


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_sweep_plot_draws_each_grid_points_mean_curve_band_and_bar(tmp_path, figures):
    rows = [row("full", 0, 0.9), row("full", 1, 0.7), row("none", 0, 0.6), row("none", 1, "", status="error")]
    histories = [curve((1.0, 0.2), (2.0, 0.8)), curve((1.0, 0.4), (4.0, 0.79)), curve((2.0, 0.5), (3.0, 1.0)), []]
    plot_sweep(tmp_path / "sweep.png", rows, ["peephole"], histories)
    (fig,) = figures
    curves, bars = fig.axes
    # the learning curves: one line per grid point (the failed run is left out of its n), on a common time axis
    lines = {line.get_label(): line for line in curves.lines}
    assert set(lines) == {"peephole=full (n=2)", "peephole=none (n=1)"}
    full_x, full_y = lines["peephole=full (n=2)"].get_data()
    assert full_x[0] == 0 and full_x[-1] == 4.0                        # to the last validation point of any run
    at = {t: np.searchsorted(full_x, t, side="right") - 1 for t in (0.5, 1.5, 2.5, 4.0)}
    assert full_y[at[0.5]] == 0                                        # before any validation point
    assert full_y[at[1.5]] == pytest.approx(100 * (0.2 + 0.4) / 2)     # each run's latest point, averaged
    assert full_y[at[2.5]] == pytest.approx(100 * (0.8 + 0.4) / 2)
    assert full_y[at[4.0]] == pytest.approx(100 * (0.8 + 0.79) / 2)
    none_y = lines["peephole=none (n=1)"].get_ydata()
    assert none_y[at[2.5]] == pytest.approx(50) and none_y[-1] == pytest.approx(100)
    # the 95% band: only for the curve with two runs, mean ± t·s/√n, clipped to [0, 100]
    (band,) = bands(curves)
    edge = band.get_paths()[0].vertices
    at_end = sorted(set(edge[edge[:, 0] == 4.0][:, 1]))
    half = t975(1) * np.std([0.8, 0.79], ddof=1) / np.sqrt(2)
    assert at_end == pytest.approx([100 * (0.795 - half), 100 * (0.795 + half)])
    assert (edge[:, 1].min(), edge[:, 1].max()) == (0, 100)           # between 2 and 4 s: wide, clipped
    assert curves.get_ylim() == (0, 100) and curves.get_legend() is not None
    # the bars: one per grid point, mean test exact match with its 95% interval (none without one)
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels == ["peephole=full", "peephole=none"]
    widths = [p.get_width() for p in bars.patches]
    assert widths == pytest.approx([80.0, 60.0])
    (container,) = [c for c in bars.containers if isinstance(c, BarContainer)]
    (xerr,) = container.errorbar.lines[2]
    spans = [seg[1, 0] - seg[0, 0] for seg in xerr.get_segments()]
    assert spans == pytest.approx([2 * 100 * t975(1) * np.std([0.9, 0.7], ddof=1) / np.sqrt(2), 0.0])


def test_sweep_plot_with_two_grid_keys_draws_one_panel_per_value_of_the_first(tmp_path, figures):
    rows = [row("full", 0, 0.9, task="copy"), row("none", 0, 0.8, task="copy"), row("full", 0, 0.5, task="sort")]
    histories = [curve((1.0, 0.9)), curve((1.0, 0.8)), curve((2.0, 0.5))]
    plot_sweep(tmp_path / "sweep.png", rows, ["task", "peephole"], histories)
    (fig,) = figures
    *panels, bars = fig.axes
    assert [ax.get_title() for ax in panels] == ["task=copy", "task=sort"]
    assert [[line.get_label() for line in ax.lines] for ax in panels] == [
        ["peephole=full (n=1)", "peephole=none (n=1)"], ["peephole=full (n=1)"]]
    assert not any(bands(ax) for ax in panels)                         # one run each: no band
    assert [t.get_text() for t in bars.get_yticklabels()] == ["copy peephole=full", "copy peephole=none",
                                                             "sort peephole=full"]
    assert [p.get_width() for p in bars.patches] == pytest.approx([90.0, 80.0, 50.0])


def test_attention_plot_shows_each_sources_weights_with_its_tokens(tmp_path, figures):
    src_vocab = Vocab.build(["abc", "ed"], "char")
    tgt_vocab = Vocab.build(["xyz"], "char")
    outputs = [tgt_vocab.encode("zy"), tgt_vocab.encode("x")]
    rng = np.random.default_rng(0)
    attention = [rng.dirichlet(np.ones(5), size=3), rng.dirichlet(np.ones(5), size=2)]   # (outputs + 1, S)
    plot_attention(tmp_path / "attn.png", ["abc", "ed"], outputs, attention, src_vocab, tgt_vocab)
    (fig,) = figures
    first, second = fig.axes
    for ax, alpha, src, out in ((first, attention[0], "abc", "zy"), (second, attention[1], "ed", "x")):
        (image,) = ax.get_images()
        n = len(src) + 1                                               # the source's tokens, then EOS
        assert np.array_equal(image.get_array(), alpha[:, :n]), "rows are outputs, columns source positions"
        assert image.get_clim() == (0.0, 1.0)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(src) + ["<eos>"]
        assert [t.get_text() for t in ax.get_yticklabels()] == list(out) + ["<eos>"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("source", "output")
