"""Seq2seq throughput: training target tokens per second, decoding sentences per second (greedy, beam 5), and
the training throughput of an equivalent PyTorch model measured side by side.

A representative model (embedding 64, hidden 256, batch 64, source and target length 20, Luong attention,
peephole "full" and "none", Seq2Seq's defaults otherwise: peeky decoder and reversed source without
attention) with random weights and random token ids: throughput does not depend on what the model has
learned, and decoding is run to a fixed max_len so every width does the same number of steps.

    python benchmarks/bench_seq2seq.py [--threads N] [--json OUT] [--no-torch]

Throughput of a training step (zero_grad, loss, backward, clip_grad_norm to 5.0, Adam step):

    train tok/s = B·T / (median seconds per step)      every target position is a real token here (no PAD)

Against PyTorch (when torch imports; it is never a dependency of lstm_np), for vocabularies of 64 (the
character-level tasks) and 4000 (word level, where the output layer and softmax take most of the step):

    ours    Seq2Seq(V, V, embed_size=64, hidden_size=256, peephole="none", attention=None, peeky=False,
                    reverse_source=False)
    torch   nn.Embedding(V, 64, padding_idx=PAD) for the source and the target, nn.LSTM(64, 256) encoder,
            nn.LSTM(64, 256) decoder started from the encoder's final (h, c), nn.Linear(256, V),
            F.cross_entropy(ignore_index=PAD): the mean over the real target tokens, as lstm_np's loss
    both    decoder input BOS, y_1 .. y_{T-1} (teacher forcing), then clip the global gradient norm to 5.0
            and take one Adam step (lr 1e-3), each library with its own defaults

    ratio = ours tok/s / torch tok/s = t_torch / t_ours          > 1 means lstm_np is faster

The torch model starts from lstm_np's initial weights: nn.LSTM's weight_ih = W_xᵀ, weight_hh = W_hᵀ (the
gate order [i, f, g, o] is the same), bias_ih = b, bias_hh = 0, nn.Linear's weight = Wᵀ. Before timing, one
loss and backward on the same batch checks that the two compute the same thing: the relative difference
of the losses and the largest gradient difference (relative to the largest gradient entry of that
parameter) go to the JSON, and the row is flagged above 1e-5 (float32) or 1e-13 (float64) relative.

Where the two differ, and why it does not change the comparison:
  * Both encoders count each source row's real tokens and, only if a row is padded, run the LSTM with
    packed-sequence semantics (lstm_np's masking, torch's pack_padded_sequence). The random batch has no
    PAD: both run the plain loop over all 20 steps. (The torch model is common.TorchSeq2Seq, the yardstick
    of bench_time_to_accuracy.py, with its attention, peeky input and source reversal off.)
  * nn.LSTM has two bias vectors (b_ih + b_hh), lstm_np one. Both torch biases get lstm_np's ∂L/∂b as
    gradient, so torch's global norm is sqrt(‖g‖² + Σ‖∂L/∂b‖²) over the two LSTMs (clipping scales a little
    more) and Adam moves the sum b_ih + b_hh twice as far: the runs agree at the first loss and drift apart
    afterwards. The extra work is 2·4H parameters, nothing next to the weights.
  * lstm_np validates the token ids (range, right padding) on every call; that is in its time.
  * Optimizers at their defaults: torch's Adam on CPU is its per-parameter loop (foreach and fused are not
    the CPU default) and clip_grad_norm_ its foreach path. lstm_np's Adam rounds plainly in float32 but in
    float64 emulates torch's fused multiply-adds exactly (Adam's `exact=None`), which costs more.
  * The encoder's outputs are not used without attention: torch does not backpropagate into them, lstm_np
    backpropagates a zero gradient (one (S, B, H) array of zeros added in).

Timing: the two run in rounds, in blocks (a 0.1 s pause, one untimed step, then two timed steps), the
order alternating between rounds; medians are reported. Why blocks: OpenBLAS and torch's OpenMP threads
keep spinning for a while after a call, and a call right after the OTHER library's competes with them for
the cores. --threads sets numpy's BLAS threads (threadpoolctl) and torch.set_num_threads alike. With more
than one thread on a machine where another job holds a core, the BLAS/OpenMP threads wait on each other
and times swing by large factors: compare with --threads 1 under load. The header prints the load average.
"""
import argparse
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import common  # benchmarks/common.py, next to this script
import lstm_np as ln
from common import load_average
from timing import time_interleaved  # benchmarks/timing.py, next to this script

torch = common.load_torch()

V, E, H, B, S, T = 64, 64, 256, 64, 20, 20
WORD_V = 4000                                          # a word-level vocabulary: the output layer dominates
TORCH_CONFIGS = [(V, np.float32), (WORD_V, np.float32), (V, np.float64)]   # (vocab, dtype); float32 first
AGREE_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}      # relative, loss and gradients


def median_seconds(fn, repeats, budget=20.0):
    """Median seconds of `repeats` calls after one untimed call; stops early (at least 3 calls) once the
    timed calls have taken `budget` seconds, so a loaded machine cannot stretch the run without bound."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= 3 and sum(times) > budget:
            break
    return float(np.median(times))


def random_batch(vocab, rng):
    """src (B, S) and tgt (B, T) of ordinary token ids (>= 4: no PAD, BOS, EOS, UNK), tgt ending in EOS."""
    src = rng.integers(4, vocab, size=(B, S))
    tgt = np.concatenate([rng.integers(4, vocab, size=(B, T - 1)), np.full((B, 1), ln.EOS)], axis=1)
    return src, tgt


def lstm_np_train_step(model, src, tgt):
    opt = ln.Adam(model.named_parameters(), lr=1e-3)

    def step():
        model.zero_grad()
        loss = model.loss(src, tgt)
        model.backward()
        ln.clip_grad_norm(model.named_parameters(), 5.0)
        opt.step()
        return loss
    return step


def bench(peephole, attention, repeats):
    rng = np.random.default_rng(0)
    model = ln.Seq2Seq(V, V, embed_size=E, hidden_size=H, peephole=peephole, attention=attention, seed=0)
    src, tgt = random_batch(V, rng)
    row = {"peephole": peephole, "attention": attention or "none"}
    row["train_tokens_per_s"] = B * T / median_seconds(lstm_np_train_step(model, src, tgt), repeats)
    bias = model.decoder.out.named_parameters()[1][1]
    bias[ln.EOS] = -1e4                      # never stop early: every width decodes exactly T steps
    for beam in (1, 5):
        sec = median_seconds(lambda: model.translate(src, max_len=T, beam_size=beam), max(2, repeats // 3))
        row[f"beam{beam}_sentences_per_s"] = B / sec
    return row


# ---------------------------------------------------------------------------------------------------------
# the PyTorch equivalent
def torch_twin(model):
    """A torch model computing what `model` (plain LSTM, no attention, no peeky, source not reversed)
    computes, starting from its weights; returns (twin, pairs) with pairs = [(lstm_np name, torch parameter,
    transposed)] for comparing gradients."""
    cfg = model.config
    vs, vt, emb, hid = cfg["src_vocab_size"], cfg["tgt_vocab_size"], cfg["embed_size"], cfg["hidden_size"]
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[model.dtype]
    twin = common.TorchSeq2Seq(vs, vt, embed_size=emb, hidden_size=hid).to(tdtype)   # no attention, peeky, reversal
    pairs = [("encoder.embed.weight", twin.src_embed.weight, False),
             ("decoder.embed.weight", twin.tgt_embed.weight, False),
             ("decoder.out.weight", twin.out.weight, True),                  # lstm_np stores (H, V), torch (V, H)
             ("decoder.out.bias", twin.out.bias, False)]
    for side, lstm in (("encoder", twin.encoder), ("decoder", twin.decoder)):
        pairs += [(f"{side}.lstm.l0.fwd.W_x", lstm.weight_ih_l0, True),     # (E, 4H) vs (4H, E), gates [i, f, g, o]
                  (f"{side}.lstm.l0.fwd.W_h", lstm.weight_hh_l0, True),     # (H, 4H) vs (4H, H)
                  (f"{side}.lstm.l0.fwd.b", lstm.bias_ih_l0, False)]        # b_ih = b; b_hh = 0 below
    ours = {name: value for name, value, _ in model.named_parameters()}
    if set(ours) != {name for name, _, _ in pairs}:
        raise RuntimeError(f"lstm_np's parameters {sorted(ours)} do not map onto the torch twin")
    with torch.no_grad():
        for name, p, transposed in pairs:
            p.copy_(torch.from_numpy(np.ascontiguousarray(ours[name].T if transposed else ours[name])))
        twin.encoder.bias_hh_l0.zero_()
        twin.decoder.bias_hh_l0.zero_()
    return twin, pairs


def check_agreement(model, twin, pairs, src, tgt):
    """One loss + backward on both from the same weights: relative loss difference and, over parameters,
    the largest max|g_ours - g_torch| / max|g_ours|. Leaves both models' gradients zeroed, weights untouched."""
    model.zero_grad()
    loss = model.loss(src, tgt)
    model.backward()
    twin.zero_grad()
    t_loss = twin(torch.from_numpy(src), torch.from_numpy(tgt))
    t_loss.backward()
    grads = {name: g for name, _, g in model.named_parameters()}
    grad_rel = 0.0
    for name, p, transposed in pairs:
        g_torch = p.grad.numpy().T if transposed else p.grad.numpy()
        scale = max(float(np.abs(grads[name]).max()), np.finfo(model.dtype).tiny)
        grad_rel = max(grad_rel, float(np.abs(grads[name] - g_torch).max()) / scale)
    model.zero_grad()
    twin.zero_grad()
    return {"loss_ours": loss, "loss_torch": float(t_loss.item()),
            "loss_rel_diff": abs(loss - float(t_loss.item())) / abs(loss), "grad_max_rel_diff": grad_rel}


def torch_train_step(twin, src, tgt):
    src_t, tgt_t = torch.from_numpy(src), torch.from_numpy(tgt)
    params = list(twin.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        loss = twin(src_t, tgt_t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss.item()                    # read the loss, as lstm_np's loss() returns a float
    return step


def bench_vs_torch(vocab, dtype, rounds, budget):
    rng = np.random.default_rng(0)
    model = ln.Seq2Seq(vocab, vocab, embed_size=E, hidden_size=H, peephole="none", attention=None,
                       peeky=False, reverse_source=False, dtype=dtype, seed=0)
    src, tgt = random_batch(vocab, rng)
    twin, pairs = torch_twin(model)
    row = {"vocab": vocab, "dtype": np.dtype(dtype).name, **check_agreement(model, twin, pairs, src, tgt)}
    tol = AGREE_TOL[np.dtype(dtype)]
    row["agrees"] = bool(row["loss_rel_diff"] <= tol and row["grad_max_rel_diff"] <= tol)
    works = {"lstm_np": lstm_np_train_step(model, src, tgt), "torch": torch_train_step(twin, src, tgt)}
    timing, row["rounds"] = time_interleaved(works, rounds, budget)
    for name, (med, mn) in timing.items():
        row[f"{name}_tokens_per_s"] = B * T / med
        row[f"{name}_best_tokens_per_s"] = B * T / mn            # the least disturbed step of each
    row["ratio"] = row["lstm_np_tokens_per_s"] / row["torch_tokens_per_s"]
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="threads for numpy's BLAS and for torch alike (the CLI's default is 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed training steps per lstm_np-only row")
    p.add_argument("--rounds", type=int, default=8,
                   help="rounds per torch comparison, each timing both twice (stops early after ~15 s, "
                        "with at least 3 rounds)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison even if torch imports")
    common.add_json_flag(p, "bench_seq2seq")
    args = p.parse_args()
    use_torch = torch is not None and not args.no_torch
    if use_torch:
        torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "load_average_before": load_average(), "rows": []}
    start = time.perf_counter()
    print(f"seq2seq: embed {E}, hidden {H}, batch {B}, lengths {S} -> {T}, vocab {V}, {args.threads} BLAS thread(s)"
          f" | load average before: {' '.join(map(str, result['load_average_before'] or []))}")
    print(f"{'peephole':9} {'attention':9} {'train tok/s':>12} {'greedy sent/s':>14} {'beam5 sent/s':>13}")
    with threadpool_limits(args.threads, user_api="blas"):
        for peephole in ("full", "none"):
            for attention in (None, "luong"):
                r = bench(peephole, attention, args.repeats)
                result["rows"].append(r)
                print(f"{r['peephole']:9} {r['attention']:9} {r['train_tokens_per_s']:12.0f} "
                      f"{r['beam1_sentences_per_s']:14.0f} {r['beam5_sentences_per_s']:13.0f}", flush=True)

        print()
        if not use_torch:
            reason = "--no-torch" if torch is not None else "torch is not installed"
            result["torch_comparison"] = f"skipped ({reason})"
            print(f"PyTorch comparison skipped ({reason})")
        else:
            result["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
            result["torch_comparison"] = []
            print(f"vs PyTorch {torch.__version__} ({torch.get_num_threads()} thread(s)), training step of the same "
                  f"model: plain LSTM, no attention, no peeky, source not reversed; medians of interleaved rounds")
            print(f"{'dtype':7} {'vocab':>5} {'ours tok/s':>11} {'torch tok/s':>12} {'ours/torch':>11} "
                  f"{'loss rel diff':>14} {'grad rel diff':>14} {'rounds':>6}")
            for vocab, dtype in TORCH_CONFIGS:
                r = bench_vs_torch(vocab, dtype, args.rounds, budget=15.0)
                result["torch_comparison"].append(r)
                print(f"{r['dtype']:7} {r['vocab']:5d} {r['lstm_np_tokens_per_s']:11.0f} {r['torch_tokens_per_s']:12.0f} "
                      f"{r['ratio']:10.2f}x {r['loss_rel_diff']:14.1e} {r['grad_max_rel_diff']:14.1e} {r['rounds']:6d}"
                      + ("" if r["agrees"] else "  (DIFFERENT RESULTS)"), flush=True)
            print("ours/torch > 1 means lstm_np trains faster; the diffs compare the first loss and all gradients "
                  "from the same weights")
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_average_after"] = load_average()
    print(f"{result['seconds']:.0f} s, load average after: {' '.join(map(str, result['load_average_after'] or []))}")
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
