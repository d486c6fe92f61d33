"""Decoding a trained Seq2Seq: batched greedy search and batched beam search with length normalisation.

Both run the decoder one step at a time (T = 1) for all sentences (and beams) of a batch at once, and
stop a sentence at EOS. A hypothesis y_1..y_n (ending in EOS, or cut at max_len) is ranked by

    score(y) = Σ_j log p(y_j | y_<j, x) / n^α            α = length_penalty (0: raw log-probability)

Beam search keeps the k best prefixes by summed log-probability, retires a prefix when it emits EOS, and
returns the best retired (or surviving) hypothesis. Beam search is a heuristic, so the greedy hypothesis is
always among the candidates: a beam never returns a lower score than greedy, and beam_size=1 is greedy.

`replay` runs the model once more over a source and its decoded output with the decoder teacher-forced on
that output, which feeds it the tokens decoding fed it: the attention (`attention_weights`) and the LSTMs'
per-step gates and states (`trace`) of the decoding, from one forward call per LSTM.
"""
import numpy as np

from .data import BOS, EOS, PAD, lengths_of, pad_batch, reverse_within_lengths, teacher_forcing_input
from .functional import log_softmax


def greedy(model, src, max_len, length_penalty=1.0):
    """-> (list of B token-id lists without EOS, scores (B,) as in the module docstring)."""
    keys, h, c, mask, summary = model.encode(src)
    B = keys.shape[0]
    ids = np.full(B, BOS)
    out = np.full((B, max_len), PAD)
    done = np.zeros(B, bool)
    n = np.zeros(B, int)                                  # tokens emitted, EOS included
    logp_sum = np.zeros(B)
    for t in range(max_len):
        logits, (h, c), _ = model.decoder.forward(ids[None], h, c, summary, keys, mask)
        logp = log_softmax(logits[0].astype(np.float64))  # (B, V)
        ids = logp.argmax(axis=1)                         # y_t = argmax_v log p(v | y_<t, x)
        live = ~done
        logp_sum[live] += logp[live, ids[live]]
        n[live] += 1
        out[live, t] = ids[live]
        done |= ids == EOS
        if done.all():
            break
    tokens = [[int(v) for v in row[:m] if v != EOS] for row, m in zip(out, n)]
    return tokens, logp_sum / np.maximum(n, 1) ** length_penalty


def replay(model, src, outputs):
    """Run the model once more on src (B, S) and its decoded `outputs` (B token lists, EOS stripped), the
    decoder teacher-forced on BOS, y_1 .. y_n: the inputs decoding fed it, so the same steps, in one call.
    Afterwards the encoder's and decoder's LSTMs hold those steps (`LSTM.step_values`).
    -> attention (B, n_max + 1, S) over the source's own positions, or None without attention."""
    keys, h0, c0, mask, summary = model.encode(src)
    if len(outputs) != keys.shape[0]:
        raise ValueError(f"outputs must hold one token list per source row ({keys.shape[0]}), got {len(outputs)}")
    tgt = pad_batch([list(o) for o in outputs], add_eos=True)
    _, _, alpha = model.decoder.forward(teacher_forcing_input(tgt).T, h0, c0, summary, keys, mask)  # (B, n, S)
    if alpha is not None and model.reverse_source:  # the encoder's reading order -> the source's positions
        alpha = reverse_within_lengths(alpha, lengths_of(np.asarray(src)))
    return alpha


def attention_weights(model, src, outputs):
    """Attention of the decoder reading `outputs` (token lists, EOS stripped) for src: a list of B arrays
    (len(outputs[b]) + 1, S) over the source's positions (the last row is the step that emits EOS)."""
    alpha = replay(model, src, outputs)
    return [alpha[b, :len(o) + 1] for b, o in enumerate(outputs)]


def trace(model, src, outputs):
    """What the model computes for src (B, S) and its decoded `outputs` (token lists, EOS stripped), per
    sentence b with m = its source length (EOS included) and n = len(outputs[b]):

        {"attention": (n + 1, m) weights over the source's positions, or None without attention,
         "encoder": [layer][direction] {"positions": (m,), "i", "f", "o", "c_tilde", "c", "h": (m, H)},
         "decoder": [layer] {"i", "f", "o", "c_tilde", "c", "h": (n + 1, Hd)}}

    Encoder step t reads source position positions[t] (reversed for a reversed source and for the reverse
    direction). Decoder step t reads BOS, y_1 .. y_n and emits y_1 .. y_n, then EOS; the values are the
    LSTMs' own (`LSTM.step_values` after `replay`), copied out per sentence."""
    alpha = replay(model, src, outputs)
    src_len = lengths_of(np.asarray(src))
    enc, dec = model.encoder.lstm, model.decoder.lstm
    enc_values = [[enc.step_values(layer, d) for d in range(enc.num_directions)] for layer in range(enc.num_layers)]
    dec_values = [dec.step_values(layer) for layer in range(dec.num_layers)]
    traces = []
    for b, out in enumerate(outputs):
        m, n = int(src_len[b]), len(out) + 1
        read = np.arange(m)[::-1] if model.reverse_source else np.arange(m)  # the forward direction's order
        encoder = [[dict(positions=read if d == 0 else read[::-1].copy(),
                         **{name: v[:m, b].copy() for name, v in values.items()})
                    for d, values in enumerate(layer)] for layer in enc_values]
        decoder = [{name: v[:n, b].copy() for name, v in values.items()} for values in dec_values]
        traces.append({"attention": None if alpha is None else alpha[b, :n, :m].copy(),
                       "encoder": encoder, "decoder": decoder})
    return traces


def beam_search(model, src, max_len, beam_size, length_penalty=1.0):
    """-> list of B token-id lists without EOS: the best of the beam's hypotheses and greedy's."""
    k = beam_size
    keys, h, c, mask, summary = model.encode(src)
    B = keys.shape[0]
    rep = np.repeat(np.arange(B), k)                      # row b*k + j is beam j of sentence b
    keys, mask, summary, h, c = keys[rep], mask[rep], summary[rep], h[:, rep], c[:, rep]
    scores = np.full((B, k), -np.inf)
    scores[:, 0] = 0.0                                    # one live prefix (BOS) to start
    hist = np.zeros((B, k, 0), int)
    ids = np.full(B * k, BOS)
    finished = [[] for _ in range(B)]                     # (normalised score, tokens)
    rows = np.arange(B)[:, None]

    def norm(total, length):
        return total / length ** length_penalty

    for t in range(max_len):
        logits, (h, c), _ = model.decoder.forward(ids[None], h, c, summary, keys, mask)
        logp = log_softmax(logits[0].astype(np.float64)).reshape(B, k, -1)
        V = logp.shape[2]
        cand = (scores[:, :, None] + logp).reshape(B, k * V)          # Σ log p of every one-token extension
        top = np.argsort(-cand, axis=1, kind="stable")[:, :k]          # the k best                    (B, k)
        parent, tok = top // V, top % V
        new_scores = np.take_along_axis(cand, top, axis=1)
        hist = np.concatenate([hist[rows, parent], tok[:, :, None]], axis=2)
        for b, j in zip(*np.nonzero((tok == EOS) & np.isfinite(new_scores))):
            finished[b].append((norm(new_scores[b, j], t + 1), hist[b, j, :-1].tolist()))
            new_scores[b, j] = -np.inf                                 # retired: the slot is free
        scores = new_scores
        flat_parent = (rows * k + parent).ravel()
        h, c = h[:, flat_parent], c[:, flat_parent]
        ids = tok.ravel()
        if all(len(finished[b]) >= k or not np.isfinite(scores[b]).any() for b in range(B)):
            break
    if hist.shape[2] == max_len:  # prefixes cut at max_len; after an early stop they are unfinished, not cut
        for b in range(B):
            for j in np.nonzero(np.isfinite(scores[b]))[0]:
                finished[b].append((norm(scores[b, j], max_len), hist[b, j].tolist()))

    g_tokens, g_scores = greedy(model, src, max_len, length_penalty)
    best = []
    for b in range(B):
        score, tokens = max(finished[b], key=lambda e: e[0]) if finished[b] else (-np.inf, [])
        best.append(g_tokens[b] if g_scores[b] >= score else tokens)
    return best
