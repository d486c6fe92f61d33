"""Figures (matplotlib, an optional extra: pip install "lstm_np[plot]"): attention heatmaps and a sweep's
learning curves and final scores."""
from .data import tokenize


def plot_attention(path, texts, outputs, attention, src_vocab, tgt_vocab):
    """One heatmap per source text: rows are output tokens (then EOS), columns source tokens (then EOS)."""
    plt = _pyplot("--plot-attention")
    n = len(texts)
    fig, axes = plt.subplots(n, 1, figsize=(7, 3.2 * n), squeeze=False)
    for ax, text, out, alpha in zip(axes[:, 0], texts, outputs, attention):
        src_tokens = tokenize(text, src_vocab.tokens, src_vocab.lower) + ["<eos>"]
        out_tokens = [tgt_vocab.id_to_token[i] for i in out] + ["<eos>"]
        weights = alpha[:, :len(src_tokens)]                      # (outputs, source positions)
        ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(src_tokens)), [repr(t)[1:-1] for t in src_tokens], fontsize=8)
        ax.set_yticks(range(len(out_tokens)), [repr(t)[1:-1] for t in out_tokens], fontsize=8)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(path, rows, keys, histories):
    """Learning curves (validation exact match against seconds: mean and 95% band per grid point) and the
    final test exact match per grid point (mean and 95% interval over its seeds). With two or more grid keys,
    one panel of curves per value of the first key (a task, say), the others naming the curves."""
    import numpy as np

    from .study import mean_ci, t975
    plt = _pyplot("--plot")
    facet, named = (keys[0], keys[1:]) if len(keys) > 1 else (None, keys)
    groups = {}                                            # (panel, curve label) -> [(row, history), ...]
    for row, history in zip(rows, histories):
        if row["status"] == "ok":
            label = " ".join(f"{k}={row[k]}" for k in named) or "all runs"
            groups.setdefault((row[facet] if facet else None, label), []).append((row, history))
    panels = list(dict.fromkeys(panel for panel, _ in groups))
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * len(panels) + 5, 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        members_of = {label: m for (p, label), m in groups.items() if p == panel}
        end = max((h[-1]["seconds"] for m in members_of.values() for _, h in m if h), default=1.0)
        grid = np.linspace(0.0, end, 200)                  # common time axis (s)
        for label, members in members_of.items():
            runs = np.array([step_curve(h, grid) for _, h in members if h])   # (runs, 200)
            if not len(runs):
                continue
            mean = runs.mean(axis=0)
            line, = ax.plot(grid, 100 * mean, label=f"{label} (n={len(runs)})")
            if len(runs) > 1:
                half = t975(len(runs) - 1) * runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
                ax.fill_between(grid, 100 * np.maximum(mean - half, 0.0), 100 * np.minimum(mean + half, 1.0),
                                alpha=0.2, color=line.get_color())
        ax.set_title(f"{facet}={panel}" if facet else "learning curves", fontsize=10)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("validation exact match (%)")
        ax.set_ylim(0, 100)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    bars = axes[0, -1]
    labels = [(f"{p} " if facet else "") + label for p, label in groups]
    stats = [mean_ci([float(r["test_exact_match"]) for r, _ in members]) for members in groups.values()]
    bars.barh(range(len(labels)), [100 * m for m, _ in stats], xerr=[100 * (h or 0.0) for _, h in stats],
              capsize=3, color="tab:gray")
    bars.set_yticks(range(len(labels)), labels, fontsize=8)
    bars.invert_yaxis()
    low = min(100 * (m - (h or 0.0)) for m, h in stats)
    bars.set_xlim(max(0.0, 5 * np.floor(low / 5) - 5), 100.5)   # zoomed in on the scores, the axis says where
    bars.set_xlabel("test exact match (%), mean ± 95% CI")
    bars.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def step_curve(history, times):
    """A run's validation exact match at each of `times`: its latest point by then (0 before the first)."""
    import numpy as np
    seconds = np.array([p["seconds"] for p in history])
    scores = np.array([p["exact_match"] for p in history])
    latest = np.searchsorted(seconds, times, side="right") - 1
    return np.where(latest >= 0, scores[np.maximum(latest, 0)], 0.0)


def _pyplot(flag):
    """matplotlib.pyplot on the file-only Agg backend, or a clear error naming the flag that needs it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(f'{flag} needs matplotlib: pip install "lstm_np[plot]"') from None
    return plt
