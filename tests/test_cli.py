"""The `lstm-np` command end to end, in subprocesses: train, translate, tasks, one-line errors on bad input, and
the effect of every train flag.

Models are tiny (hidden 8, embedding 8) and trained for a handful of steps: these tests prove the plumbing
(files written, metrics in range, errors reported), never the quality of a model.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import (CLI, ENV, TIMEOUT, TINY_FLAGS, cli, cli_many, load_metrics, make_data, ok, one_line_error,
                     reverse_pairs, start, write_tsv)

TASK_NAMES = ("copy", "reverse", "sort", "addition", "dates", "number-words")
METRIC_KEYS = ("test_exact_match", "test_token_accuracy", "test_bleu", "final_loss", "train_seconds", "steps")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A.tsv/B.tsv and two trained runs in one folder: `plain` (no attention) and `luong` (attention)."""
    folder = tmp_path_factory.mktemp("cli")
    make_data(folder)
    results = cli_many({
        # --output-bias uniform: after 12 steps from the default start (the targets' frequencies) this tiny model
        # still answers EOS at once, and test_translate_max_len_caps_the_output needs longer outputs
        "plain": ["train", "--train", "A.tsv", "--test", "B.tsv", "--steps", 12, "--eval-every", 5,
                  "--out", "plain", "--metrics-out", "plain.json", "--attention", "none",
                  "--output-bias", "uniform"] + TINY_FLAGS,
        "luong": ["train", "--train", "A.tsv", "--steps", 6, "--attention", "luong", "--out", "luong"] + TINY_FLAGS,
    }, folder)
    for r in results.values():
        ok(r)
    return folder

# ----------------------------------------------------------------------------- train and translate


def test_train_writes_a_complete_checkpoint_directory(runs):
    names = os.listdir(runs / "plain")
    for name in ("config.json", "src_vocab.json", "tgt_vocab.json", "checkpoint.json"):
        assert name in names, f"{name} missing from {sorted(names)}"
    for prefix in ("weights-", "optimizer-"):
        assert any(n.startswith(prefix) and n.endswith(".npz") for n in names), f"no {prefix}*.npz in {names}"


def test_metrics_json_has_the_documented_keys_in_range(runs):
    m = load_metrics(runs / "plain.json")
    missing = [k for k in METRIC_KEYS if k not in m]
    assert not missing, f"metrics lack {missing}"
    assert 0.0 <= m["test_exact_match"] <= 1.0 and 0.0 <= m["test_token_accuracy"] <= 1.0
    assert 0.0 <= m["test_bleu"] <= 100.0
    assert m["steps"] == 12 and np.isfinite(m["final_loss"]) and m["train_seconds"] >= 0
    assert m["test_examples"] == len({s for s, _ in reverse_pairs(10, seed=1)})   # scored on B.tsv


def test_translate_prints_one_line_per_source_argument(runs):
    r = ok(cli(["translate", "--checkpoint", "plain", "abc", "de", "a"], runs))
    assert len(r.stdout.splitlines()) == 3, r.stdout


def test_translate_with_source_prints_tsv_lines_in_input_order(runs):
    sources = ["edcba", "a", "abc", "de", "a"]              # lengths out of order: batched by length inside
    plain = ok(cli(["translate", "--checkpoint", "plain", *sources], runs)).stdout.splitlines()
    alone = [ok(cli(["translate", "--checkpoint", "plain", s], runs)).stdout.rstrip("\n") for s in sources[:3]]
    tsv = ok(cli(["translate", "--checkpoint", "plain", "--with-source", *sources], runs)).stdout.splitlines()
    assert plain[:3] == alone, "each output at its own source's place"
    assert tsv == [f"{s}\t{t}" for s, t in zip(sources, plain)]


def test_translate_reads_sources_from_stdin_one_per_line(runs):
    r = ok(cli(["translate", "--checkpoint", "plain"], runs, stdin="abc\nba\r\nedcba\n"))
    assert len(r.stdout.splitlines()) == 3, r.stdout


def test_translate_with_beam_search(runs):
    r = ok(cli(["translate", "--checkpoint", "plain", "--beam-size", "3", "abc", "ba"], runs))
    assert len(r.stdout.splitlines()) == 2, r.stdout


def test_translate_survives_empty_unknown_and_overlong_sources(runs):
    sources = ["", "xyz ☃ 𝄞 \u200b", "abcde" * 30]          # empty, unknown characters (UNK), 150 characters
    for beam in ("1", "3"):
        r = ok(cli(["translate", "--checkpoint", "plain", "--beam-size", beam] + sources, runs))
        assert len(r.stdout.splitlines()) == len(sources), r.stdout
    r = ok(cli(["translate", "--checkpoint", "plain"], runs, stdin="\n".join(sources) + "\n"))
    assert len(r.stdout.splitlines()) == len(sources), r.stdout


def test_plot_attention_writes_a_png(runs):
    r = ok(cli(["translate", "--checkpoint", "luong", "--plot-attention", "attn.png", "abc", "ed"], runs))
    assert len(r.stdout.splitlines()) == 2
    assert (runs / "attn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_attention_without_attention_is_a_one_line_error(runs):
    one_line_error(cli(["translate", "--checkpoint", "plain", "--plot-attention", "x.png", "abc"], runs),
                   "--plot-attention", "attention")
    assert not (runs / "x.png").exists()


def test_tasks_lists_all_six_builtin_tasks(tmp_path):
    r = ok(cli(["tasks"], tmp_path))
    listed = [line.split()[0] for line in r.stdout.splitlines() if line and not line[0].isspace()]
    assert sorted(listed) == sorted(TASK_NAMES), r.stdout
    assert "'673+34' -> '707'; 120000 training, 500 validation, 1000 test pairs" in r.stdout, r.stdout


def test_train_on_a_builtin_task_writes_to_runs_by_default(tmp_path):
    ok(cli(["train", "--task", "copy", "--steps", "5"] + TINY_FLAGS, tmp_path))
    assert (tmp_path / "runs" / "copy" / "checkpoint.json").exists()


def test_tsv_with_bom_and_crlf_line_endings_is_accepted(tmp_path):
    lines = "".join(f"{s}\t{t}\r\n" for s, t in reverse_pairs(20, seed=2))
    (tmp_path / "crlf.tsv").write_bytes(b"\xef\xbb\xbf" + lines.encode("utf-8"))
    ok(cli(["train", "--train", "crlf.tsv", "--steps", "3", "--out", "run"] + TINY_FLAGS, tmp_path))
    vocab = json.loads((tmp_path / "run" / "src_vocab.json").read_text(encoding="utf-8"))
    assert "\ufeff" not in vocab["itos"] and "\r" not in vocab["itos"], vocab["itos"]

# ----------------------------------------------------------------------------- bad input: one line, no traceback


BAD_TSV = {
    "no_tab.tsv": (b"ab\tba\nno tab here\n", 2, "no tab"),
    "empty_source.tsv": (b"ab\tba\ncd\tdc\n  \tx\n", 3, "empty source"),
    "empty_target.tsv": (b"ab\tba\ncd\t\n", 2, "empty target"),
    "bad_utf8.tsv": (b"ab\tba\ncd\tdc\nab\t\xff\xfe\n", 3, "UTF-8"),
}


@pytest.fixture(scope="module")
def bad_runs(runs):
    """Every bad command of BAD_COMMANDS, run side by side once: {case: CompletedProcess}."""
    for name, (data, _, _) in BAD_TSV.items():
        (runs / name).write_bytes(data)
    (runs / "a_file").write_text("not a directory")
    jobs = {case: [a.replace("NEVER", f"never_{case}") for a in args] for case, (args, _) in BAD_COMMANDS.items()}
    jobs.update({name: ["train", "--train", name, "--steps", "2", "--out", f"never_{name}"] + TINY_FLAGS
                 for name in BAD_TSV})
    return cli_many(jobs, runs)


T = ["train", "--train", "A.tsv", "--steps", "2", "--out", "NEVER"] + TINY_FLAGS   # NEVER: a folder of the case's own
BAD_COMMANDS = {   # case: (arguments, words the one error line must contain)
    "missing_file": (["train", "--train", "missing.tsv", "--steps", "2"], ["missing.tsv", "no such file"]),
    "directory_as_train": (["train", "--train", ".", "--steps", "2", "--out", "NEVER"], ["directory"]),
    "missing_test_file": (T + ["--test", "nope.tsv"], ["nope.tsv"]),
    "unknown_task": (["train", "--task", "nope", "--steps", "2"], ["--task", "nope"]),
    "unknown_flag": (T + ["--frobnicate"], ["--frobnicate"]),
    "unknown_command": (["frobnicate"], ["frobnicate"]),
    "negative_lr": (T + ["--lr", "-1"], ["--lr", "-1"]),
    "non_numeric_lr": (T + ["--lr", "abc"], ["--lr", "abc"]),
    "nan_lr": (T + ["--lr", "nan"], ["--lr", "nan"]),
    "zero_hidden_size": (T + ["--hidden-size", "0"], ["--hidden-size", "0"]),
    "dropout_above_one": (T + ["--dropout", "1.5"], ["--dropout", "1.5"]),
    "label_smoothing_one": (T + ["--label-smoothing", "1"], ["--label-smoothing", "[0, 1)", "'1'"]),
    "final_lr_fraction_above_one": (T + ["--final-lr-fraction", "1.5"], ["--final-lr-fraction", "[0, 1]", "'1.5'"]),
    "unknown_peephole": (T + ["--peephole", "foo"], ["--peephole", "foo"]),
    "unknown_attention": (T + ["--attention", "foo"], ["--attention", "foo"]),
    "negative_warmup": (T + ["--warmup-steps", "-1"], ["--warmup-steps", "-1"]),
    "negative_seed": (T + ["--seed", "-1"], ["--seed", "-1"]),
    "neither_task_nor_train": (["train", "--steps", "2"], ["--task", "--train"]),
    "both_task_and_train": (["train", "--task", "copy", "--train", "A.tsv", "--steps", "2"], ["--task", "--train"]),
    "resume_without_out": (["train", "--train", "A.tsv", "--resume", "--steps", "2"], ["--resume", "--out"]),
    "resume_without_checkpoint": (["train", "--out", "nothing_here", "--resume", "--steps", "2"],
                                  ["nothing to resume", "nothing_here"]),
    "resume_changing_hidden_size": (["train", "--out", "plain", "--resume", "--steps", "20", "--hidden-size", "16"],
                                    ["--hidden-size", "resum"]),
    "out_is_a_file": (["train", "--train", "A.tsv", "--steps", "2", "--out", "a_file"] + TINY_FLAGS, ["a_file"]),
    "translate_missing_checkpoint": (["translate", "--checkpoint", "no_such_run", "abc"], ["no_such_run"]),
    "translate_file_as_checkpoint": (["translate", "--checkpoint", "A.tsv", "abc"], ["A.tsv"]),
    "translate_zero_beam": (["translate", "--checkpoint", "plain", "--beam-size", "0", "abc"], ["--beam-size"]),
}


@pytest.mark.parametrize("case", sorted(BAD_COMMANDS))
def test_bad_command_is_one_error_line_without_traceback(bad_runs, case):
    one_line_error(bad_runs[case], *BAD_COMMANDS[case][1])


@pytest.mark.parametrize("name", sorted(BAD_TSV))
def test_malformed_tsv_error_names_file_and_line(bad_runs, name):
    _, lineno, what = BAD_TSV[name]
    one_line_error(bad_runs[name], f"{name}:{lineno}:", what)


def test_refused_commands_leave_no_run_behind(bad_runs, runs):
    left = sorted(n for n in os.listdir(runs) if n.startswith("never") or n in ("nothing_here", "runs"))
    assert not left, f"refused commands created {left}"


def test_existing_run_is_refused_without_resume_or_overwrite_and_kept_intact(tmp_path):
    make_data(tmp_path)
    train = ["train", "--train", "A.tsv", "--out", "run", "--eval-every", "2"] + TINY_FLAGS
    ok(cli(train + ["--steps", "3"], tmp_path))
    before = {n: (tmp_path / "run" / n).read_bytes() for n in os.listdir(tmp_path / "run")}
    one_line_error(cli(train + ["--steps", "4"], tmp_path), "run", "--resume", "--overwrite")
    after = {n: (tmp_path / "run" / n).read_bytes() for n in os.listdir(tmp_path / "run")}
    assert after == before, "a refused run changed the saved one"
    ok(cli(train + ["--steps", "4", "--overwrite"], tmp_path))
    manifest = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert manifest["step"] == 4 and manifest["state"]["step"] == 4
    stale = [n for n in os.listdir(tmp_path / "run") if n.endswith(".npz") and "00000003" in n]
    assert not stale, f"--overwrite left files of the old run: {stale}"


def test_help_of_every_command_prints_and_exits_zero(tmp_path):
    for command in ([], ["train"], ["translate"], ["tasks"]):
        r = cli(command + ["--help"], tmp_path)
        assert r.returncode == 0 and "usage: lstm-np" in r.stdout, (command, r.stderr)
        assert "Traceback" not in r.stderr


def test_resume_works_from_another_directory_with_relative_data_paths(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_data(data)
    ok(cli(["train", "--train", "A.tsv", "--test", "B.tsv", "--steps", "3", "--out", "run"] + TINY_FLAGS, data))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(cli(["train", "--out", data / "run", "--resume", "--steps", "5"], elsewhere))
    manifest = json.loads((data / "run" / "checkpoint.json").read_text())
    assert manifest["step"] == 5
    # giving the same file again, by another relative path, is not a change of configuration
    ok(cli(["train", "--out", data / "run", "--resume", "--steps", "6", "--train", Path("data") / "A.tsv"], tmp_path))
    one_line_error(cli(["train", "--out", data / "run", "--resume", "--steps", "7", "--train", "B.tsv"], data),
                   "--train", "cannot change")

# ----------------------------------------------------------------------------- every train flag has its effect
# One run per flag (or per group of flags whose effects are told apart), side by side: tiny models, 2-3 steps.
# Each test compares a run with a flag to one without it, or checks what only the flag can have caused.

FLAG_BASE = ["train", "--train", "A.tsv", "--steps", 3, "--warmup-steps", 0] + TINY_FLAGS
FLAG_RUNS = {
    "base": FLAG_BASE + ["--seed", 1, "--peeky", "--reverse-source"],
    "seed2": FLAG_BASE + ["--seed", 2],
    "norev": FLAG_BASE + ["--seed", 1, "--no-reverse-source"],
    "bi": FLAG_BASE + ["--seed", 1, "--bidirectional", "--no-peeky", "--dtype", "float64"],
    "wd": FLAG_BASE + ["--seed", 1, "--weight-decay", 1.0],
    "clip": FLAG_BASE + ["--seed", 1, "--clip", 1e-9],
    "epochs": ["train", "--train", "A.tsv", "--valid", "B.tsv", "--epochs", 2] + TINY_FLAGS,
    "seconds": ["train", "--train", "A.tsv", "--max-seconds", 1] + TINY_FLAGS,
    "words": ["train", "--train", "W.tsv", "--tokens", "word", "--lower", "--steps", 2] + TINY_FLAGS,
}
WORDS = ["Red", "blue", "Green", "yellow", "red"]


def word_pairs(n, seed):
    """n (sentence, its words reversed) pairs of 1-3 capitalised and lower-case colour words."""
    rng = np.random.default_rng(seed)
    sentences = [" ".join(rng.choice(WORDS, size=rng.integers(1, 4))) for _ in range(n)]
    return [(s, " ".join(s.split()[::-1])) for s in sentences]


@pytest.fixture(scope="module")
def flag_runs(tmp_path_factory):
    """{name: (folder of the run, CompletedProcess)} for every run of FLAG_RUNS."""
    folder = tmp_path_factory.mktemp("flags")
    make_data(folder)
    write_tsv(folder / "W.tsv", word_pairs(40, seed=3))
    jobs = {name: args + ["--out", name, "--metrics-out", f"{name}.json"] for name, args in FLAG_RUNS.items()}
    results = cli_many(jobs, folder)
    return {name: (folder / name, ok(r)) for name, r in results.items()}


def saved_config(run):
    """config.json of a run: {"train": the training flags, "model": the Seq2Seq arguments}."""
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


def final_weights(run):
    """{parameter name: array} of the run's last checkpoint."""
    manifest = json.loads((run / "checkpoint.json").read_text())
    with np.load(run / manifest["weights"], allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def initial_weights(run):
    """The weights the run started from: a new Trainer's model of its saved configuration (the seed fixes the
    weights, the training file the output bias's start)."""
    from lstm_np.train import TrainConfig, Trainer
    cfg = TrainConfig.saved({**saved_config(run)["train"], "out": None, "metrics_out": None})
    return {name: value.copy() for name, value, _ in Trainer(cfg, log=lambda line: None).model.named_parameters()}


def largest_change(a, b):
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def test_bidirectional_flag_builds_a_two_direction_encoder(flag_runs):
    run, _ = flag_runs["bi"]
    assert saved_config(run)["model"]["bidirectional"] is True
    w = final_weights(run)
    assert "encoder.lstm.l0.bwd.W_x" in w, sorted(w)
    assert w["encoder.lstm.l0.bwd.W_h"].shape == (8, 32)
    # the decoder starts from both directions' final states side by side: 2 x hidden_size units
    assert w["decoder.lstm.l0.fwd.W_h"].shape == (16, 64)
    assert "encoder.lstm.l0.bwd.W_x" not in final_weights(flag_runs["base"][0])


def test_peeky_flags_widen_or_keep_the_decoder_input(flag_runs):
    peeky, no_peeky = flag_runs["base"][0], flag_runs["bi"][0]
    assert saved_config(peeky)["model"]["peeky"] is True and saved_config(no_peeky)["model"]["peeky"] is False
    # decoder input: the embedding (8), plus the encoder's summary (hidden 8) with --peeky
    assert final_weights(peeky)["decoder.lstm.l0.fwd.W_x"].shape == (8 + 8, 32)
    assert final_weights(no_peeky)["decoder.lstm.l0.fwd.W_x"].shape == (8, 64)


def test_reverse_source_flags_are_saved_and_change_what_the_encoder_reads(flag_runs):
    rev, norev = flag_runs["base"][0], flag_runs["norev"][0]
    assert saved_config(rev)["model"]["reverse_source"] is True
    assert saved_config(norev)["model"]["reverse_source"] is False
    assert largest_change(final_weights(rev), final_weights(norev)) > 0, "same seed, same data: only the order differs"


def test_dtype_flag_sets_the_precision_of_every_parameter(flag_runs):
    assert saved_config(flag_runs["bi"][0])["model"]["dtype"] == "float64"
    assert {a.dtype for a in final_weights(flag_runs["bi"][0]).values()} == {np.dtype(np.float64)}
    assert {a.dtype for a in final_weights(flag_runs["base"][0]).values()} == {np.dtype(np.float32)}


def test_seed_flag_changes_the_weights(flag_runs):
    one, two = flag_runs["base"][0], flag_runs["seed2"][0]
    assert saved_config(one)["train"]["seed"] == 1 and saved_config(two)["train"]["seed"] == 2
    assert saved_config(one)["model"]["seed"] == 1 and saved_config(two)["model"]["seed"] == 2   # the weights' seed
    w1, w2 = final_weights(one), final_weights(two)
    assert set(w1) == set(w2)
    assert all(not np.array_equal(w1[k], w2[k]) for k in w1 if k != "encoder.embed.weight"), \
        "every parameter (but the embedding's PAD row alone) must differ between seeds"


def test_weight_decay_flag_pulls_the_weights_towards_zero(flag_runs):
    base, wd = flag_runs["base"][0], flag_runs["wd"][0]
    assert saved_config(wd)["train"]["weight_decay"] == 1.0

    def norm(w):
        return np.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in w.values()))

    start = norm(initial_weights(base))
    assert norm(final_weights(wd)) < start - 1e-3 < norm(final_weights(base)), \
        (norm(final_weights(wd)), start, norm(final_weights(base)))


def test_clip_flag_bounds_the_gradient_norm(flag_runs):
    """Clipped to a norm of 1e-9, the gradients fall far below Adam's eps (1e-8): the steps nearly vanish."""
    base, clip = flag_runs["base"][0], flag_runs["clip"][0]
    assert saved_config(clip)["train"]["clip"] == 1e-9
    moved_base = largest_change(final_weights(base), initial_weights(base))
    moved_clip = largest_change(final_weights(clip), initial_weights(clip))
    assert moved_clip < 0.2 * moved_base, (moved_clip, moved_base)


def test_epochs_flag_stops_after_that_many_passes_and_valid_flag_is_the_validation_set(flag_runs):
    run, result = flag_runs["epochs"]
    m = load_metrics(run.parent / "epochs.json")
    assert m["steps"] == 2 * 8, "2 epochs of 60 pairs in batches of 8"
    assert "60 train / 10 valid pairs" in result.stdout, "--valid B.tsv holds nothing of A.tsv out"
    assert m["test_set"] == "valid" and m["test_examples"] == len({s for s, _ in reverse_pairs(10, seed=1)})


def test_max_seconds_flag_stops_training_at_the_time_limit(flag_runs):
    m = load_metrics(flag_runs["seconds"][0].parent / "seconds.json")
    assert m["train_seconds"] >= 1.0, "stopped before its time"
    assert m["train_seconds"] < 60, "not stopped at 1 s (the default limit is 180 s)"
    assert m["steps"] >= 1


def test_tokens_and_lower_flags_shape_the_vocabulary(flag_runs):
    run, _ = flag_runs["words"]
    for name in ("src_vocab.json", "tgt_vocab.json"):
        vocab = json.loads((run / name).read_text(encoding="utf-8"))
        assert vocab["tokens"] == "word" and vocab["lower"] is True
        words = vocab["itos"][4:]
        assert sorted(words) == sorted({w.lower() for w in WORDS}), words   # whole words, lower-cased


def test_beam_size_reaches_the_final_evaluation_and_threads_the_blas(tmp_path, monkeypatch):
    """In-process, with Seq2Seq.translate watched: the validation decodes greedily, the final test evaluation
    with --beam-size; every decoding runs under the --threads BLAS limit (3: neither the default 1 nor this
    machine's core count, which BLAS would use without a limit)."""
    from threadpoolctl import threadpool_info

    from lstm_np import cli as cli_lib
    from lstm_np.seq2seq import Seq2Seq
    make_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls, translate = [], Seq2Seq.translate

    def watched(self, src, max_len=50, beam_size=1, **kwargs):
        calls.append((beam_size, {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
        return translate(self, src, max_len, beam_size, **kwargs)

    monkeypatch.setattr(Seq2Seq, "translate", watched)
    assert cli_lib.main(["train", "--train", "A.tsv", "--steps", "2", "--out", "run", "--beam-size", "3",
                         "--threads", "3"] + TINY_FLAGS) == 0
    assert [beam for beam, _ in calls] == [1, 3], calls
    assert all(threads == {3} for _, threads in calls), calls


def test_translate_max_len_caps_the_output(runs):
    from lstm_np.data import pad_batch
    from lstm_np.evaluate import encode_source
    from lstm_np.run_folder import load_model
    sources = ["abcde", "ba", "eeddccbbaa"]
    model, src_vocab, tgt_vocab, _ = load_model(runs / "plain")
    long = model.translate(pad_batch([encode_source(src_vocab, s) for s in sources]), max_len=40)
    assert max(len(o) for o in long) > 2, "the check needs an output longer than the cap"
    r = ok(cli(["translate", "--checkpoint", "plain", "--max-len", "2"] + sources, runs))
    assert r.stdout.splitlines() == [tgt_vocab.decode(o[:2]) for o in long]   # greedy: the first two tokens

# ----------------------------------------------------------------------------- the command itself


def test_no_command_prints_the_commands_and_exits_2(tmp_path):
    r = cli([], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr, r.stderr
    for command in ("train", "translate", "tasks"):
        assert command in r.stdout, r.stdout


def test_translate_names_the_characters_it_reads_as_unknown_on_stderr(runs):
    r = ok(cli(["translate", "--checkpoint", "plain", "xyz", "abc", "aQa"], runs))
    assert len(r.stdout.splitlines()) == 3, r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr                              # "abc" is all known: nothing to say
    assert "source 1 'xyz'" in lines[0] and "'x', 'y', 'z'" in lines[0] and "<unk>" in lines[0], lines[0]
    assert "source 3 'aQa'" in lines[1] and lines[1].endswith(": 'Q'"), lines[1]


def test_closed_output_pipe_ends_quietly(tmp_path):
    """`lstm-np tasks | head -3` once head has gone: no "Broken pipe" error, no traceback. The pipe's reading
    end is closed before the command starts, so its first write fails every time."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(CLI + ["tasks"], cwd=tmp_path, env=ENV, stdout=write_end, stderr=subprocess.PIPE,
                           encoding="utf-8", timeout=TIMEOUT)
    finally:
        os.close(write_end)
    assert r.stderr == "", r.stderr
    assert r.returncode == 141, "128 + SIGPIPE, the status of a tool stopped by a closed pipe"


def test_gradcheck_module_prints_every_configuration_and_passes(tmp_path):
    """`python -m lstm_np.gradcheck` (make gradcheck): the table of all 12 configurations, PASS, exit 0."""
    r = subprocess.run([sys.executable, "-m", "lstm_np.gradcheck"], cwd=tmp_path, env=ENV, capture_output=True,
                       encoding="utf-8", timeout=TIMEOUT)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    header = next(line for line in r.stdout.splitlines() if "full/full/1L" in line)
    assert len(header.split()) == 12, header
    rows = {line.split()[0] for line in r.stdout.splitlines()[4:] if line[:1].isalpha() and "worst" not in line}
    assert {"W_xi", "W_hf", "W_ci", "W_cc", "W_co", "b_o"} <= rows, rows
    assert r.stdout.rstrip().endswith("(PASS)"), r.stdout[-200:]


def test_translate_reproduces_the_printed_test_score_when_the_last_weights_win(tmp_path):
    """The weights the final test scores are the checkpoint's `best`: here the only validation point is at step 5,
    the run then trains to step 150 without validating, and the final test scores the (far better) last weights;
    `translate` must load those, not the step-5 ones."""
    make_data(tmp_path)
    flags = ["--train", "A.tsv", "--test", "B.tsv", "--hidden-size", "32", "--embed-size", "16", "--batch-size", "8",
             "--lr", "0.02", "--warmup-steps", "0", "--decay-steps", "150", "--out", "run"]
    ok(cli(["train", *flags, "--steps", 5, "--eval-every", 5], tmp_path))
    r = ok(cli(["train", "--out", "run", "--resume", "--steps", 150, "--eval-every", 1000,
                "--metrics-out", "m.json"], tmp_path))
    assert "using the best validated weights" not in r.stdout, r.stdout   # the last weights won
    printed = load_metrics(tmp_path / "m.json")["test_exact_match"]
    assert printed >= 0.3, f"the run should have learned the task (test exact match {printed})"
    refs = {}
    for line in (tmp_path / "B.tsv").read_text().splitlines():
        src, tgt = line.split("\t")
        refs.setdefault(src, set()).add(tgt)
    out = ok(cli(["translate", "--checkpoint", "run", "--with-source"], tmp_path, stdin="\n".join(refs) + "\n"))
    answers = dict(line.split("\t") for line in out.stdout.splitlines())
    served = sum(answers[s] in targets for s, targets in refs.items()) / len(refs)
    assert served == printed, f"translate scores {served}, train printed {printed}"
    assert manifest_best_step(tmp_path / "run") == 150


def manifest_best_step(folder):
    return int(json.loads((folder / "checkpoint.json").read_text())["best"].split("-")[1].split(".")[0])


G2P_LIKE = [("CAT", "K AE T"), ("CATS", "K AE T S"), ("AT", "AE T"), ("TACK", "T AE K"), ("TAT", "T AE T"),
            ("ACT", "AE K T"), ("SAT", "S AE T"), ("TACKS", "T AE K S")]


def test_per_side_tokens_train_letters_in_and_phone_words_out_through_checkpoint_translate_and_serve(tmp_path):
    """--src-tokens char --tgt-tokens word: a spelled word in, space-separated phones out, as G2P data is written.
    Each vocabulary is saved with its own unit; translate and the explorer read the source as letters and write
    phones; the final metrics have the token error rate."""
    from lstm_np.serve import Explorer
    write_tsv(tmp_path / "g2p.tsv", G2P_LIKE * 4)
    r = ok(cli(["train", "--train", "g2p.tsv", "--valid", "g2p.tsv", "--src-tokens", "char", "--tgt-tokens", "word",
                "--steps", 60, "--lr", "0.03", "--out", "run", "--metrics-out", "m.json"] + TINY_FLAGS, tmp_path))
    assert "token error rate" in r.stdout
    src_vocab = json.loads((tmp_path / "run" / "src_vocab.json").read_text())
    tgt_vocab = json.loads((tmp_path / "run" / "tgt_vocab.json").read_text())
    assert (src_vocab["tokens"], tgt_vocab["tokens"]) == ("char", "word")
    assert set(src_vocab["itos"][4:]) == set("CATSK") and set(tgt_vocab["itos"][4:]) == {"K", "AE", "T", "S"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (config["src_tokens"], config["tgt_tokens"]) == ("char", "word")
    metrics = load_metrics(tmp_path / "m.json")
    assert 0 <= metrics["test_token_error_rate"] <= 1 + 1e-9
    out = ok(cli(["translate", "--checkpoint", "run", "CAT", "TACKS"], tmp_path)).stdout.splitlines()
    assert len(out) == 2 and all(set(line.split(" ")) <= {"K", "AE", "T", "S"} for line in out), out
    answer = Explorer.from_checkpoint(str(tmp_path / "run")).translate({"src": ["CAT"]})
    assert answer["source_tokens"] == ["C", "A", "T", "<eos>"]
    assert set(answer["target_tokens"][:-1]) <= {"K", "AE", "T", "S"} and answer["translation"] == out[0]


def test_tokens_sets_both_sides_and_a_side_flag_overrides_it(tmp_path):
    from lstm_np.cli import build_parser, train_config
    base = ["train", "--train", str(tmp_path / "a.tsv"), "--out", str(tmp_path / "r")]
    for flags, expected in [([], ("char", "char")), (["--tokens", "word"], ("word", "word")),
                            (["--tokens", "word", "--src-tokens", "char"], ("char", "word")),
                            (["--tgt-tokens", "word"], ("char", "word"))]:
        cfg = train_config(build_parser().parse_args(base + flags))
        assert cfg.side_tokens() == expected, flags
    one_line_error(cli(["train", "--task", "copy", "--tgt-tokens", "word"], tmp_path), "--tgt-tokens word",
                   "character-level")
