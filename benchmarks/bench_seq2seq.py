"""Seq2seq throughput: training target tokens per second, and decoding sentences per second (greedy, beam 5).

A representative model (embedding 64, hidden 256, batch 64, source and target length 20, Luong attention,
peephole "full" and "none") with random weights and random token ids: throughput does not depend on what
the model has learned, and decoding is run to a fixed max_len so every width does the same number of steps.

    python benchmarks/bench_seq2seq.py [--threads N] [--json OUT]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import lstm_np as ln  # noqa: E402

V, E, H, B, S, T = 64, 64, 256, 64, 20, 20


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench(peephole, attention, repeats):
    rng = np.random.default_rng(0)
    model = ln.Seq2Seq(V, V, embed_size=E, hidden_size=H, peephole=peephole, attention=attention, seed=0)
    opt = ln.Adam(model.named_parameters(), lr=1e-3)
    src = rng.integers(4, V, size=(B, S))
    tgt = np.concatenate([rng.integers(4, V, size=(B, T - 1)), np.full((B, 1), ln.EOS)], axis=1)

    def train_step():
        model.zero_grad()
        model.loss(src, tgt)
        model.backward()
        ln.clip_grad_norm(model.named_parameters(), 5.0)
        opt.step()

    row = {"peephole": peephole, "attention": attention or "none"}
    row["train_tokens_per_s"] = B * T / median_seconds(train_step, repeats)
    bias = model.decoder.out.named_parameters()[1][1]
    bias[ln.EOS] = -1e4                      # never stop early: every width decodes exactly T steps
    for beam in (1, 5):
        sec = median_seconds(lambda: model.translate(src, max_len=T, beam_size=beam), max(2, repeats // 3))
        row[f"beam{beam}_sentences_per_s"] = B / sec
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (the CLI's default is 1)")
    p.add_argument("--repeats", type=int, default=10, help="timed training steps per row")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "bench_seq2seq.json"),
                   help="where to write the JSON results")
    args = p.parse_args()
    rows = []
    print(f"seq2seq: embed {E}, hidden {H}, batch {B}, lengths {S} -> {T}, vocab {V}, {args.threads} BLAS thread(s)")
    print(f"{'peephole':9} {'attention':9} {'train tok/s':>12} {'greedy sent/s':>14} {'beam5 sent/s':>13}")
    with threadpool_limits(args.threads, user_api="blas"):
        for peephole in ("full", "none"):
            for attention in (None, "luong"):
                r = bench(peephole, attention, args.repeats)
                rows.append(r)
                print(f"{r['peephole']:9} {r['attention']:9} {r['train_tokens_per_s']:12.0f} "
                      f"{r['beam1_sentences_per_s']:14.0f} {r['beam5_sentences_per_s']:13.0f}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"threads": args.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
