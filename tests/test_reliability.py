"""Runs you can trust: exact resume, checkpoints that refuse damage and survive kills, divergence and signals
reported in one line, and property tests of the text inputs (TSV files, vocabularies).

Command-line runs happen in subprocesses (tests/helpers.py); the Trainer and CheckpointDir are also
driven in-process where a failure has to be injected at a precise point.
"""
import json
import os
import pickle
import random
import shutil
import signal
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lstm_np.checkpoint as checkpoint_lib
from lstm_np import cli as cli_lib
from lstm_np.checkpoint import CheckpointDir, CheckpointError
from lstm_np.data import EOS, UNK, Vocab, read_tsv, tokenize
from lstm_np.evaluate import encode_source
from lstm_np.run_folder import load_model
from lstm_np.seq2seq import Seq2Seq
from lstm_np.train import TrainConfig, Trainer, TrainingError

from helpers import TINY_FLAGS, cli, cli_many, finish, load_metrics, make_data, ok, one_line_error, start

# ----------------------------------------------------------------------------- exact resume

RESUME_CONFIGS = {
    "default": [],
    "dropout_2_layers": ["--dropout", "0.3", "--layers", "2"],
    "embed_and_output_dropout": ["--embed-dropout", "0.2", "--output-dropout", "0.3"],
}
# --output-bias uniform: from that start these runs' best validation point falls before step 20, so that the
# resumed run must carry a best checkpoint (with the default start the best is at step 20 itself)
RESUME_FLAGS = ["--train", "A.tsv", "--test", "B.tsv", "--eval-every", "7", "--lr", "0.05", "--warmup-steps", "3",
                "--decay-steps", "60", "--output-bias", "uniform"] + TINY_FLAGS


def manifest(folder):
    return json.loads((folder / "checkpoint.json").read_text())


def npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


@pytest.mark.parametrize("config", sorted(RESUME_CONFIGS))
def test_resuming_at_20_to_40_equals_40_steps_in_one_go_bit_for_bit(tmp_path, config):
    make_data(tmp_path)
    flags = ["train"] + RESUME_FLAGS + RESUME_CONFIGS[config]
    first = cli_many({"once": flags + ["--steps", 40, "--out", "once", "--metrics-out", "once.json"],
                      "half": flags + ["--steps", 20, "--out", "split"]}, tmp_path)
    ok(first["once"])
    ok(first["half"])
    assert manifest(tmp_path / "split")["step"] == 20
    assert manifest(tmp_path / "split")["state"]["best_step"] in (7, 14), "the resume must carry a best checkpoint"
    r = ok(cli(["train", "--out", "split", "--resume", "--steps", 40, "--metrics-out", "split.json"], tmp_path))
    assert "resumed split at step 20" in r.stdout

    once, split = manifest(tmp_path / "once"), manifest(tmp_path / "split")
    for which in ("weights", "optimizer", "best"):
        assert once[which] == split[which], f"{which}: {once[which]} vs {split[which]}"
        a, b = npz(tmp_path / "once" / once[which]), npz(tmp_path / "split" / split[which])
        assert sorted(a) == sorted(b), which
        for name in a:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), \
                f"{which}/{name} differs by up to {np.max(np.abs(a[name] - b[name]))}"
    for state in (once["state"], split["state"]):
        state.pop("train_seconds")
        for point in state["history"]:
            point.pop("seconds")                    # timings; everything else on the learning curve is exact
    assert len(once["state"]["history"]) == 40 // 7
    assert once["state"] == split["state"]

    m_once, m_split = load_metrics(tmp_path / "once.json"), load_metrics(tmp_path / "split.json")
    for key in ("final_loss", "test_exact_match", "test_token_accuracy", "test_bleu", "test_chrf", "steps"):
        assert m_once[key] == m_split[key], f"{key}: {m_once[key]} vs {m_split[key]}"
    assert m_split["steps"] == 40

# ----------------------------------------------------------------------------- checkpoints that refuse damage


class CreatesMarker:
    """Unpickling this calls open(path, "w"): a file appears if anything ever unpickles it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def replace_arrays(folder, which, change):
    """Rewrite the manifest's `which` npz of a run with change({name: array}) -> ({name: array}, savez kwargs)."""
    path = folder / manifest(folder)[which]
    arrays, kwargs = change(npz(path))
    os.remove(path)
    with open(path, "wb") as f:       # a file object: np.savez would otherwise append ".npz" to the name
        np.savez(f, **arrays, **kwargs)


def truncate(folder, which):
    path = folder / manifest(folder)[which]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def random_bytes(folder, which):
    path = folder / manifest(folder)[which]
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def object_array(folder, which):
    def change(arrays):
        first = sorted(arrays)[0]
        arrays[first] = np.array([{"not": "numbers"}, None], dtype=object)
        return arrays, {"allow_pickle": True}
    replace_arrays(folder, which, change)


def pickle_payload(folder, which):
    def change(arrays):
        first = sorted(arrays)[0]
        arrays[first] = np.array([CreatesMarker(folder.parent / "MARKER")], dtype=object)
        return arrays, {"allow_pickle": True}
    replace_arrays(folder, which, change)


def raw_pickle(folder, which):
    (folder / manifest(folder)[which]).write_bytes(pickle.dumps(CreatesMarker(folder.parent / "MARKER")))


def manifest_not_json(folder, which):
    (folder / "checkpoint.json").write_text("{'step': 5,")


def config_mismatch(folder, which):
    config = json.loads((folder / "config.json").read_text())
    config["model"]["hidden_size"] = 12
    config["train"]["hidden_size"] = 12
    (folder / "config.json").write_text(json.dumps(config))


def manifest_without_state(folder, which):
    m = manifest(folder)
    m.pop("state", None)
    (folder / "checkpoint.json").write_text(json.dumps(m))


def state_missing_a_key(folder, which):
    m = manifest(folder)
    m["state"].pop("epoch_rng", None)
    (folder / "checkpoint.json").write_text(json.dumps(m))


def config_not_an_object(folder, which):
    (folder / "config.json").write_text("[1, 2]")


def vocab_without_specials(folder, which):
    (folder / "src_vocab.json").write_text(json.dumps({"tokens": "char", "lower": False, "itos": ["a", "b"]}))


BOTH = ("translate", "resume")
# case: (damage(run folder, "best" or "weights"), the file the error must name ("npz": the damaged array file,
# which is the best weights for translate and the last weights for --resume), words the error must hold,
# the commands that read what was damaged)
DAMAGE = {
    "truncated_npz": (truncate, "npz", "truncated", BOTH),
    "random_bytes_npz": (random_bytes, "npz", "not an .npz", BOTH),
    "object_array_npz": (object_array, "npz", "pickle", BOTH),
    "pickle_payload_npz": (pickle_payload, "npz", "pickle", BOTH),
    "raw_pickle_as_npz": (raw_pickle, "npz", "not an .npz", BOTH),
    "manifest_not_json": (manifest_not_json, "checkpoint.json", "JSON", BOTH),
    "config_does_not_match_arrays": (config_mismatch, "npz", "incompatible", BOTH),
    "config_not_an_object": (config_not_an_object, "config.json", "config", BOTH),
    "vocab_without_specials": (vocab_without_specials, "src_vocab.json", "vocab", BOTH),
    "manifest_without_state": (manifest_without_state, "checkpoint.json", "training state", ("resume",)),
    "state_missing_a_key": (state_missing_a_key, "checkpoint.json", "epoch_rng", ("resume",)),
}
DAMAGE_CASES = [(case, command) for case in sorted(DAMAGE) for command in DAMAGE[case][3]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of 10 steps with validations at 4 and 8, so weights-*, optimizer-* and best-* all exist."""
    folder = tmp_path_factory.mktemp("trained")
    make_data(folder)
    ok(cli(["train", "--train", "A.tsv", "--steps", 10, "--eval-every", 4, "--out", "run"] + TINY_FLAGS, folder))
    return folder / "run"


@pytest.fixture(scope="module")
def damaged(trained, tmp_path_factory):
    """Each DAMAGE applied to a copy of the trained run, then `translate` and `--resume` run on it."""
    root = tmp_path_factory.mktemp("damaged")
    make_data(root)                            # --resume reads A.tsv again, relative to the working directory
    jobs, files = {}, {}
    for case, (damage, _, _, commands) in DAMAGE.items():
        folder = root / case / "run"
        shutil.copytree(trained, folder)
        files[case] = manifest(folder)        # the file names, before the manifest itself may be damaged
        for which in ("best", "weights"):
            damage(folder, which)
        if "translate" in commands:
            jobs[case, "translate"] = ["translate", "--checkpoint", folder, "abc"]
        jobs[case, "resume"] = ["train", "--out", folder, "--resume", "--steps", 14]
    return root, files, cli_many(jobs, root)


@pytest.mark.parametrize("case, command", DAMAGE_CASES)
def test_damaged_checkpoint_is_refused_in_one_line_naming_the_file(damaged, case, command):
    root, files, results = damaged
    _, named, words, _ = DAMAGE[case]
    if named == "npz":
        named = files[case][{"translate": "best", "resume": "weights"}[command]]
    one_line_error(results[case, command], named, words)
    assert not (root / case / "MARKER").exists(), "a pickle payload in a checkpoint was executed"


def test_checkpoint_loader_never_unpickles(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.array([CreatesMarker(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError, match="evil.npz"):
        checkpoint_lib.load_arrays(path)
    path.write_bytes(pickle.dumps(CreatesMarker(marker)))
    with pytest.raises(CheckpointError, match="evil.npz"):
        checkpoint_lib.load_arrays(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="objects"):
        checkpoint_lib.save_arrays(tmp_path / "out.npz", {"w": np.array([None], dtype=object)})

# ----------------------------------------------------------------------------- atomic checkpoints


def test_sigkill_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    make_data(tmp_path)
    run = tmp_path / "run"
    args = ["train", "--train", "A.tsv", "--max-seconds", 60, "--eval-every", 1, "--log-every", 1,
            "--lr", "0.05", "--out", "run"] + TINY_FLAGS
    delays = random.Random(0)
    steps = []
    for attempt in range(4):
        proc = start(args + (["--resume"] if (run / "checkpoint.json").exists() else ["--overwrite"]), tmp_path)
        assert proc.stdout.readline(), f"attempt {attempt}: the run printed nothing"   # the first log line
        time.sleep(delays.uniform(0.05, 0.6))
        proc.kill()
        proc.communicate(timeout=30)
        if (run / "checkpoint.json").exists():
            load_model(run)                                        # best weights
            load_model(run, which="weights")
            CheckpointDir(run).load("optimizer")
            steps.append(manifest(run)["step"])
    assert steps, "no checkpoint was ever written: kill later"
    assert steps == sorted(steps), f"a resumed run went back in steps: {steps}"
    ok(cli(["translate", "--checkpoint", "run", "abc"], tmp_path))
    ok(cli(["train", "--out", "run", "--resume", "--steps", steps[-1] + 1], tmp_path))   # one clean save
    current = {manifest(run)[which] for which in ("weights", "optimizer", "best")} | {
        "checkpoint.json", "config.json", "src_vocab.json", "tgt_vocab.json"}
    debris = sorted(set(os.listdir(run)) - current)
    assert not debris, f"files left behind by the killed runs: {debris}"


def tiny_config(folder, **changes):
    make_data(folder)
    cfg = dict(train=str(folder / "A.tsv"), hidden_size=8, embed_size=8, batch_size=8, eval_every=2, log_every=100,
               lr=0.05, warmup_steps=0, steps=4, out=str(folder / "run"))
    cfg.update(changes)
    return TrainConfig(**cfg)


def test_failure_between_arrays_and_manifest_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    Trainer(tiny_config(tmp_path), log=lambda line: None).run()
    run = tmp_path / "run"
    before = npz(run / manifest(run)["weights"])
    assert manifest(run)["step"] == 4

    real_write_json = checkpoint_lib.write_json

    def failing_write_json(path, obj):
        if os.path.basename(path) == checkpoint_lib.MANIFEST:
            raise OSError(28, "No space left on device (injected)")
        real_write_json(path, obj)
    monkeypatch.setattr(checkpoint_lib, "write_json", failing_write_json)
    with pytest.raises(OSError, match="injected"):
        Trainer(tiny_config(tmp_path, steps=8), resume=True, log=lambda line: None).run()
    assert (run / "weights-00000006.npz").exists(), "the failure was meant to come after the arrays were written"

    monkeypatch.setattr(checkpoint_lib, "write_json", real_write_json)
    assert manifest(run)["step"] == 4
    model, _, _, _ = load_model(run, which="weights")
    for name, value, _ in model.named_parameters():
        assert np.array_equal(value, before[name]), f"{name} is not the step-4 value"
    # and it goes on (checkpointing at 5 and 8 now, so no later save rewrites the step-6 files by chance)
    Trainer(tiny_config(tmp_path, steps=8, eval_every=5), resume=True, log=lambda line: None).run()
    assert manifest(run)["step"] == 8
    current = {manifest(run)[which] for which in ("weights", "optimizer", "best")}
    leftovers = sorted(n for n in os.listdir(run) if n.endswith(".npz") and n not in current)
    assert not leftovers, f"files the manifest does not name were never cleaned up: {leftovers}"

# ----------------------------------------------------------------------------- divergence


def poison_loss(monkeypatch, at_call, result=float("nan"), error=None):
    """Make the `at_call`-th call of Seq2Seq.loss (1-based) return `result` or raise `error`."""
    real_loss, calls = Seq2Seq.loss, []

    def loss(self, src, tgt, rows=None, label_smoothing=0.0):
        calls.append(1)
        value = real_loss(self, src, tgt, rows, label_smoothing)
        if len(calls) == at_call:
            if error is not None:
                raise error
            return result
        return value
    monkeypatch.setattr(Seq2Seq, "loss", loss)


@pytest.mark.parametrize("poison", ["nan_loss", "inf_loss", "nan_activations"])
def test_trainer_stops_at_the_diverged_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, poison):
    kwargs = {"nan_loss": {}, "inf_loss": {"result": float("inf")},
              "nan_activations": {"error": ValueError("h0 contains NaN or Inf")}}[poison]
    poison_loss(monkeypatch, at_call=5, **kwargs)
    trainer = Trainer(tiny_config(tmp_path, steps=10), log=lambda line: None)
    with pytest.raises(TrainingError) as err:
        trainer.run()
    message = str(err.value)
    assert "step 5" in message and "--lr" in message and "--clip" in message, message
    assert "\n" not in message
    assert trainer.state.step == 4
    assert manifest(tmp_path / "run")["step"] == 4 and "step 4" in message
    load_model(tmp_path / "run")
    load_model(tmp_path / "run", which="weights")


def test_trainer_stops_when_an_update_overflows_the_parameters(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tmp_path, steps=10), log=lambda line: None)
    real_step, calls = trainer.opt.step, []

    def overflowing_step(*pieces):
        real_step(*pieces)
        calls.append(1)
        if len(calls) == 3:
            trainer.model.named_parameters()[0][1][...] = np.inf
    monkeypatch.setattr(trainer.opt, "step", overflowing_step)
    with pytest.raises(TrainingError, match="step 3") as err:
        trainer.run()
    assert "--lr" in str(err.value)
    assert manifest(tmp_path / "run")["step"] == 2
    model, _, _, _ = load_model(tmp_path / "run", which="weights")
    assert all(np.isfinite(v).all() for _, v, _ in model.named_parameters())


def test_cli_reports_a_diverged_run_in_one_line_with_exit_code_3(tmp_path, monkeypatch, capsys):
    poison_loss(monkeypatch, at_call=3)
    make_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = cli_lib.main(["train", "--train", "A.tsv", "--steps", "10", "--eval-every", "2", "--out", "run"] + TINY_FLAGS)
    captured = capsys.readouterr()
    assert code == 3, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for needle in ("diverged at step 3", "lower --lr", "--clip", "step 2", "run"):
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    load_model(tmp_path / "run")
    ok(cli(["translate", "--checkpoint", "run", "abc"], tmp_path))   # the kept checkpoint serves


def test_huge_learning_rate_diverges_at_the_first_update_with_exit_code_3_and_no_checkpoint(tmp_path):
    """Real overflow, no patching: Adam's first update moves every parameter with a nonzero gradient by lr/(1-β1)
    times ±(1-β1) exactly, so lr 1e38 overflows float32 parameters at step 1 on any machine. (A divergence later
    in a run, after a checkpoint, is tested deterministically above with a poisoned loss or update: when a huge
    but finite lr overflows depends on the gradients, hence on the floating-point details of the machine.)"""
    make_data(tmp_path)
    result = cli(["train", "--train", "A.tsv", "--lr", "1e38", "--warmup-steps", "0", "--steps", 50,
                  "--out", "first"] + TINY_FLAGS, tmp_path)
    one_line_error(result, "diverged at step 1", "--lr", "--clip", "no checkpoint", code=3)
    assert not (tmp_path / "first" / "checkpoint.json").exists()

# ----------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_training_with_a_checkpoint_that_resumes(tmp_path, sig, code):
    make_data(tmp_path)
    proc = start(["train", "--train", "A.tsv", "--max-seconds", 60, "--log-every", 1, "--eval-every", 1000,
                  "--out", "run"] + TINY_FLAGS, tmp_path)
    deadline = time.monotonic() + 60
    while not proc.stdout.readline().startswith("step "):
        assert proc.poll() is None and time.monotonic() < deadline, "the run stopped before logging a step"
    proc.send_signal(sig)
    result = finish(proc)
    line = one_line_error(result, "checkpoint", "--resume", code=code)
    assert signal.Signals(sig).name in line, line
    step = manifest(tmp_path / "run")["step"]
    assert step >= 1 and f"step {step}" in line, line
    load_model(tmp_path / "run")

    r = ok(cli(["train", "--out", "run", "--resume", "--steps", step + 3, "--metrics-out", "m.json"], tmp_path))
    assert f"resumed run at step {step}" in r.stdout
    assert load_metrics(tmp_path / "m.json")["steps"] == step + 3
    assert manifest(tmp_path / "run")["step"] == step + 3

# ----------------------------------------------------------------------------- text inputs, fuzzed
# tests/test_data.py fuzzes read_tsv with arbitrary bytes (tabs, CRLF, blank lines, unicode) and checks that it
# returns clean pairs or raises DataError; the properties below add what it does not pin down: that valid
# files round-trip exactly whatever their BOM, line endings and blank lines, and that any text a user types
# at translate time encodes to in-range ids with unknown characters as UNK.

FIELD = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n"), min_size=1, max_size=12
                ).filter(lambda s: s == s.strip() and s)


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(FIELD, FIELD), min_size=1, max_size=6),
       endings=st.lists(st.sampled_from(["\n", "\r\n", "\n\n", "\r\n \t \r\n"]), min_size=6, max_size=6),
       bom=st.booleans(), final_newline=st.booleans())
def test_read_tsv_round_trips_any_valid_file(tmp_path_factory, pairs, endings, bom, final_newline):
    text = "".join(f"{s}\t{t}" + (endings[k] if k < len(pairs) - 1 or final_newline else "")
                   for k, (s, t) in enumerate(pairs))
    path = tmp_path_factory.mktemp("tsv") / "f.tsv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    assert read_tsv(path) == pairs


@settings(max_examples=80, deadline=None)
@given(train=st.lists(st.text(max_size=10), min_size=1, max_size=5),
       probe=st.text(st.characters(), max_size=20), mode=st.sampled_from(["char", "word"]))
def test_any_translate_input_encodes_to_in_range_ids_with_unknowns_as_unk(train, probe, mode):
    vocab = Vocab.build(train, tokens=mode)
    ids = encode_source(vocab, probe)
    assert ids[-1] == EOS and all(0 <= i < len(vocab) for i in ids)
    known = set(vocab.id_to_token[4:])
    assert ids[:-1] == [vocab.token_to_id[t] if t in known else UNK for t in tokenize(probe, mode)]


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(st.characters(blacklist_categories=("Cs",))), max_size=5))
def test_vocab_files_round_trip_any_unicode(tmp_path_factory, texts):
    path = tmp_path_factory.mktemp("vocab") / "v.json"
    for mode in ("char", "word"):
        vocab = Vocab.build(texts, tokens=mode)
        vocab.save(path)
        assert Vocab.load(path).to_dict() == vocab.to_dict()
