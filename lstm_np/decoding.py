"""Decoding a trained Seq2Seq: batched greedy search and batched beam search with length normalisation.

Both run the decoder one step at a time (T = 1) for all sentences (and beams) of a batch at once, and
stop a sentence at EOS. A hypothesis y_1..y_n (ending in EOS, or cut at max_len) is ranked by

    score(y) = Σ_j log p(y_j | y_<j, x) / n^α            α = length_penalty (0: raw log-probability)

Beam search keeps the k best prefixes by summed log-probability, retires a prefix when it emits EOS, and
returns the best retired (or surviving) hypothesis. Beam search is a heuristic, so the greedy hypothesis is
always among the candidates: a beam never returns a lower score than greedy, and beam_size=1 is greedy.
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


def attention_weights(model, src, outputs):
    """Attention of the decoder reading `outputs` (token lists, EOS stripped) for src: a list of B arrays
    (len(outputs[b]) + 1, S) over the source's positions (the last row is the step that emits EOS)."""
    tgt = pad_batch([list(o) for o in outputs], add_eos=True)
    keys, h0, c0, mask, summary = model.encode(src)
    _, _, alpha = model.decoder.forward(teacher_forcing_input(tgt).T, h0, c0, summary, keys, mask)  # (B, n, S)
    if model.reverse_source:  # from the encoder's reading order back to the source's own positions
        alpha = reverse_within_lengths(alpha, lengths_of(np.asarray(src)))
    return [alpha[b, :len(o) + 1] for b, o in enumerate(outputs)]


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
