"""English pronunciation (CMUdict G2P): word and phoneme error rates that lstm_np's recipe reaches in a time budget,
side by side with a PyTorch model of the same architecture trained for the same time in the same run.

For each budget S (10 and 30 minutes; --long adds 60): `lstm-np train` with the README's G2P recipe (`make g2p`'s
flags, --max-seconds S, 1 BLAS thread) in a subprocess and, at the same time in this process with 1 torch thread,
common.TorchSeq2Seq with the same architecture (bidirectional nn.LSTM encoder of the same size, nn.LSTM decoder
started from both directions' final states, Luong dot attention, the encoder's summary fed to every decoder step,
the same embedding size and dropout; no peepholes, as the recipe) trained with Adam and a cosine decay over S on
the same words, batches and clipping; with the recipe's --average-decay it averages its weights alike and keeps
the average when it validates better (`last_or_average`). Its learning rate is TORCH_LR, chosen on the words held out of the training file
(`--tune-torch` reruns that choice; never the test words). Both are scored on the 12,000 test words:

    WER = 1 - exact match (a word is right when the output equals any of its reference pronunciations)
    PER = edit distance to the closest reference over its length, summed over the words

with greedy decoding for both (the `ours/torch` ratio is PyTorch's WER over lstm_np's: > 1 means lstm_np is
ahead), and lstm_np's recipe also with its beam of 5. Each side is one model on one core; `make g2p` trains one
such model per core and scores their ensemble, so its figure is lower than this table's.

    python benchmarks/bench_g2p.py                    # 10 and 30 minutes (about 45 minutes in all)
    python benchmarks/bench_g2p.py --budgets 600      # one row
    python benchmarks/bench_g2p.py --long             # also 60 minutes
    python benchmarks/bench_g2p.py --tune-torch       # PyTorch's learning rate on the held-out words

Prints a Markdown table and writes JSON (default benchmarks/results/bench_g2p.json).
"""
import argparse
import os
import sys
import tempfile
import time

import common  # benchmarks/common.py, next to this script
from common import DATA, shown

DATA_FLAGS = ["--train", f"{DATA}/cmudict-g2p-train.tsv", "--test", f"{DATA}/cmudict-g2p-test.tsv"]
TOKENS = ["--src-tokens", "char", "--tgt-tokens", "word"]     # letters in, phones out (also in the recipe)


def makefile_recipe():
    """The model and training flags of `make g2p` (the Makefile's G2P_RECIPE, its one written copy)."""
    with open(os.path.join(common.ROOT, "Makefile")) as f:
        text = f.read().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("G2P_RECIPE"))
    return line.split(":=", 1)[1].split()


RECIPE = makefile_recipe()


def recipe_value(flag, default, kind):
    return kind(RECIPE[RECIPE.index(flag) + 1]) if flag in RECIPE else default


# the recipe's architecture and sizes in torch (its dropout too; no peepholes, as the recipe)
TORCH = {"hidden_size": recipe_value("--hidden-size", 128, int), "embed_size": recipe_value("--embed-size", 64, int),
         "embed_dropout": recipe_value("--embed-dropout", 0.0, float),
         "output_dropout": recipe_value("--output-dropout", 0.0, float),
         "attention": "luong", "peeky": "--no-peeky" not in RECIPE, "bidirectional": True,
         "batch_size": recipe_value("--batch-size", 64, int),
         "schedule": "cosine", "average_decay": recipe_value("--average-decay", 0.0, float),
         "label_smoothing": recipe_value("--label-smoothing", 0.0, float)}
# --tune-torch 600 with the recipe's earlier sizes (hidden 128, no dropout): validation exact match 72.5% (1e-3),
# 72.8% (3e-3), 71.7% (1e-2); not rerun for hidden 256 with today's dropout
TORCH_LR = 3e-3
TORCH_LRS = (1e-3, 3e-3, 1e-2)


def error_rates(model, data, pairs, beam_size=1):
    from lstm_np.evaluate import evaluate
    metrics, _ = evaluate(model, data.src_vocab, data.tgt_vocab, pairs, common.max_len_of(data), beam_size)
    return {"wer": 1 - metrics["exact_match"], "per": metrics["token_error_rate"]}


def run_row(seconds, seed, workdir, with_torch, torch_lr):
    """lstm_np's recipe in a subprocess and, at the same time in this process, the PyTorch model."""
    from lstm_np.run_folder import load_model
    proc = common.start_lstm_np([*DATA_FLAGS, *RECIPE, "--max-seconds", f"{seconds:g}", "--seed", str(seed)],
                                workdir, f"g2p-{seconds:g}")
    data = common.torch_data(DATA_FLAGS + TOKENS, seed=seed)
    theirs = None
    if with_torch:
        model, steps, train_seconds = common.train_torch(data, seconds, lr=torch_lr, seed=seed, **TORCH)
        weights = last_or_average(model, data)
        theirs = {**error_rates(model, data, data.splits["test"]), "steps": steps, "train_seconds": train_seconds,
                  "weights": weights}
    m = common.finish_lstm_np(proc)
    if "failed" in m:
        return {"seconds": seconds, "lstm_np": m, "torch": theirs}
    ours = {"wer_beam": 1 - m["test_exact_match"], "per_beam": m["test_token_error_rate"], "steps": m["steps"],
            "train_seconds": m["train_seconds"], "beam_size": m["beam_size"], "weights": m.get("weights", "last")}
    model, _, _, _ = load_model(m["out"])
    ours.update(error_rates(model, data, data.splits["test"]))          # greedy, as PyTorch's
    return {"seconds": seconds, "lstm_np": ours, "torch": theirs}


def last_or_average(model, data):
    """Like `lstm-np train`'s final evaluation, in short: the PyTorch model keeps its averaged weights
    (common.train_torch's `averaged`, with the recipe's --average-decay) when their exact match on all the
    held-out words beats its last weights' (train also weighs the best validated weights, breaks ties on token
    accuracy and validates on the first --valid-size pairs). -> which."""
    averaged = getattr(model, "averaged", None)
    if not averaged:
        return "last"
    last = {name: value.clone() for name, value in model.state_dict().items()}
    last_score = 1 - error_rates(model, data, data.splits["valid"])["wer"]
    model.load_state_dict({**last, **averaged})
    if 1 - error_rates(model, data, data.splits["valid"])["wer"] > last_score:
        return "average"
    model.load_state_dict(last)
    return "last"


def tune_torch(seconds, seed):
    """PyTorch's validation exact match (the words held out of the training file) for each TORCH_LRS."""
    data = common.torch_data(DATA_FLAGS + TOKENS, seed=seed)
    scores = {}
    for lr in TORCH_LRS:
        model, steps, _ = common.train_torch(data, seconds, lr=lr, seed=seed, **TORCH)
        scores[lr] = 1 - error_rates(model, data, data.splits["valid"])["wer"]
        print(f"lr {lr:g}: validation exact match {100 * scores[lr]:.1f}% ({steps} steps in {seconds:g} s)", flush=True)
    return scores


def table(rows, with_torch):
    head = ("| budget | lstm_np WER (beam 5) | PER | lstm_np WER (greedy) | PER | steps |"
            + (" PyTorch WER (greedy) | PER | steps | ours/torch (WER) |" if with_torch else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        ours, theirs = r["lstm_np"], r["torch"]
        if "failed" in ours:
            lines.append(f"| {r['seconds'] / 60:g} min | failed: {ours['failed']} |")
            continue
        cells = [f"{r['seconds'] / 60:g} min", f"{100 * ours['wer_beam']:.2f}%", f"{100 * ours['per_beam']:.2f}%",
                 f"{100 * ours['wer']:.2f}%", f"{100 * ours['per']:.2f}%", str(ours["steps"])]
        if with_torch:
            cells += [f"{100 * theirs['wer']:.2f}%", f"{100 * theirs['per']:.2f}%", str(theirs["steps"]),
                      f"{theirs['wer'] / ours['wer']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="600,1800", help="training seconds per row, comma-separated [600,1800]")
    p.add_argument("--long", action="store_true", help="add a 3600-second row")
    p.add_argument("--seed", type=int, default=0, help="seed of both models and of the held-out words [0]")
    p.add_argument("--no-torch", action="store_true", help="lstm_np only")
    p.add_argument("--torch-lr", type=float, default=TORCH_LR, help=f"PyTorch's Adam learning rate [{TORCH_LR:g}]")
    p.add_argument("--tune-torch", metavar="SECONDS", type=float,
                   help=f"instead: PyTorch's validation score for each lr in {TORCH_LRS} at this budget")
    common.add_json_flag(p, "bench_g2p")
    args = p.parse_args()
    with_torch = not args.no_torch and common.load_torch() is not None
    if with_torch:
        common.torch.set_num_threads(1)
    if args.tune_torch:
        if not with_torch:
            sys.exit("bench_g2p: --tune-torch needs torch (pip install torch)")
        common.write_json(args.json, {"tune_torch": tune_torch(args.tune_torch, args.seed)})
        return
    budgets = [float(b) for b in args.budgets.split(",")] + ([3600.0] if args.long else [])
    print(f"lstm_np: lstm-np train {shown(DATA_FLAGS + RECIPE)} --max-seconds S (1 BLAS thread)")
    if with_torch:
        print(f"PyTorch {common.torch.__version__}, 1 thread: {TORCH}, lr {args.torch_lr:g}")
    else:
        print("PyTorch: not installed, lstm_np only")
    print(f"load average at start: {common.load_average()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for seconds in budgets:
            started = time.perf_counter()
            rows.append(run_row(seconds, args.seed, workdir, with_torch, args.torch_lr))
            print(f"{seconds:g} s row done in {time.perf_counter() - started:.0f} s", flush=True)
    print(table(rows, with_torch))
    common.write_json(args.json, {"rows": rows, "recipe": DATA_FLAGS + RECIPE, "torch": TORCH,
                                  "torch_lr": args.torch_lr, "load_average_end": common.load_average()})


if __name__ == "__main__":
    main()
