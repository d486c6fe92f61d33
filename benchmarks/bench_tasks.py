"""Accuracy on real sentences: what `lstm-np train` reaches on the Tatoeba English -> French pairs (word level)
in a time budget, with greedy decoding and beam search. (The built-in tasks and the DLfS2 data are measured
at several budgets, beside PyTorch, by bench_time_to_accuracy.py.)

Each row is one `lstm-np train` run in a subprocess with the CLI's default flags plus the row's own (shown in
the table), exactly as a user would type it. The data is read from data/ in the repository (see
data/README.md).

    python benchmarks/bench_tasks.py                       # both rows (about 9 minutes)
    python benchmarks/bench_tasks.py --only tatoeba-luong
    python benchmarks/bench_tasks.py --list

Prints a Markdown table and writes JSON (default benchmarks/results/bench_tasks.json).
"""
import argparse
import os
import sys
import tempfile

import common  # benchmarks/common.py, next to this script
from common import DATA, shown

TATOEBA = ["--train", "{data}/tatoeba-eng-fra-train.tsv", "--test", "{data}/tatoeba-eng-fra-test.tsv",
           "--tokens", "word", "--lower"]
# name -> (flags after `lstm-np train`, evaluation beam widths). Attention against none, both at the defaults
# (lr 1e-2, chosen on character-level data; with the output bias at random, attention's h~ saturated on these
# word-level pairs and reached 1.5%: docs/results.md).
ROWS = {f"tatoeba-{attention}": ([*TATOEBA, "--attention", attention, "--max-seconds", "240"], [1, 5])
        for attention in ("luong", "none")}


def run_row(name, flags, beams, workdir):
    flags = [f.replace("{data}", DATA) for f in flags]
    missing = [f for f in flags if f.endswith(".tsv") and not os.path.exists(f)]
    if missing:
        return {"name": name, "skipped": f"missing {missing[0]}"}
    m = common.train_lstm_np(flags, workdir, name)
    if "failed" in m:
        return {"name": name, "failed": m["failed"]}
    row = {"name": name, "flags": shown(flags),
           "exact_match": m["test_exact_match"], "token_accuracy": m["test_token_accuracy"],
           "bleu": {1: m["test_bleu"]}, "chrf": {1: m["test_chrf"]}, "steps": m["steps"],
           "train_seconds": m["train_seconds"], "wall_seconds": m["wall_seconds"]}
    for beam in beams:
        if beam == 1:
            continue
        row["bleu"][beam], row["chrf"][beam], row["exact_match_beam"] = beam_scores(m["out"], flags, beam)
    return row


def beam_scores(out, flags, beam):
    """Re-evaluate the saved best weights on the test file with beam search."""
    from lstm_np.data import read_tsv
    from lstm_np.evaluate import evaluate
    from lstm_np.run_folder import load_model, trained_max_len
    model, src_vocab, tgt_vocab, _ = load_model(out)
    test = read_tsv(flags[flags.index("--test") + 1])
    metrics, _ = evaluate(model, src_vocab, tgt_vocab, test, trained_max_len(out), beam_size=beam, with_bleu=True)
    return metrics["bleu"], metrics["chrf"], metrics["exact_match"]


def table(rows):
    lines = ["| run | flags (beyond the defaults) | test exact match | token accuracy | BLEU (greedy / beam 5) "
             "| steps | train s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r or "failed" in r:
            lines.append(f"| {r['name']} | {r.get('skipped') or r.get('failed')} | | | | | |")
            continue
        bleu = " / ".join(f"{v:.1f}" for v in r["bleu"].values())
        lines.append(f"| {r['name']} | `{r['flags']}` | {100 * r['exact_match']:.1f}% | "
                     f"{100 * r['token_accuracy']:.1f}% | {bleu} | {r['steps']} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated row names (default: all)")
    p.add_argument("--list", action="store_true", help="list the rows and exit")
    common.add_json_flag(p, "bench_tasks")
    args = p.parse_args()
    if args.list:
        for name, (flags, _) in ROWS.items():
            print(f"{name:20} lstm-np train {shown(f.replace('{data}', DATA) for f in flags)}")
        return 0
    names = args.only.split(",") if args.only else list(ROWS)
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; see --list")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            flags, beams = ROWS[name]
            rows.append(run_row(name, flags, beams, workdir))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rows))
    common.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
