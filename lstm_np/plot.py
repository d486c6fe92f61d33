"""Attention heatmaps (matplotlib, an optional extra: pip install "lstm_np[plot]")."""
from .data import tokenize


def plot_attention(path, texts, outputs, attention, src_vocab, tgt_vocab):
    """One heatmap per source text: rows are output tokens (then EOS), columns source tokens (then EOS)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError('--plot-attention needs matplotlib: pip install "lstm_np[plot]"') from None
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
