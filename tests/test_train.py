"""The training loop's recipe and bookkeeping: zero-initialised peepholes stepping at a scaled learning rate,
the learning curve in the metrics, validation points under a time budget, and runs saved before these
options existed resuming as they trained."""
import dataclasses
import json

import numpy as np
import pytest

import lstm_np as ln
from lstm_np.cell import peephole_lr_scale
from lstm_np.train import TrainConfig, Trainer

from helpers import cli, make_data, ok

TINY_CONFIG = dict(hidden_size=8, embed_size=8, batch_size=8, log_every=100, lr=0.05, warmup_steps=0)


def config(folder, **changes):
    make_data(folder)
    return TrainConfig(**{**dict(train=str(folder / "A.tsv"), steps=4, **TINY_CONFIG), **changes})


@pytest.mark.parametrize("peephole, names", [("full", {"W_c", "W_co"}), ("diagonal", {"p_c", "p_co"}), ("none", set())])
def test_zero_peephole_init_zeroes_exactly_the_peephole_weights(peephole, names):
    uniform = ln.LSTMCell(3, 4, peephole=peephole, seed=5).params
    zero = ln.LSTMCell(3, 4, peephole=peephole, seed=5, peephole_init="zero").params
    assert set(uniform) == set(zero)
    for key in uniform:
        if key in names:
            assert not zero[key].any() and uniform[key].any(), key
        else:
            assert np.array_equal(zero[key], uniform[key]), f"{key} changed with the peephole init"


def test_peephole_init_is_validated_and_reaches_every_cell_of_a_model():
    with pytest.raises(ValueError, match="peephole_init must be one of"):
        ln.LSTMCell(3, 4, peephole_init="zeros")
    model = ln.Seq2Seq(10, 10, num_layers=2, bidirectional=True, attention="luong", peephole_init="zero")
    peepholes = [(n, v) for n, v, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in ("W_c", "W_co")]
    assert len(peepholes) == 2 * 2 * 2 + 2 * 2 and not any(v.any() for _, v in peepholes)
    assert model.config["peephole_init"] == "zero"


def test_peephole_lr_scale_names_every_peephole_weight_and_nothing_else():
    for peephole, suffixes in (("full", {"W_c", "W_co"}), ("diagonal", {"p_c", "p_co"}), ("none", set())):
        params = ln.Seq2Seq(10, 10, peephole=peephole, attention="bahdanau").named_parameters()
        scale = peephole_lr_scale(params, 0.1)
        assert {n.rsplit(".", 1)[-1] for n in scale} == suffixes and set(scale.values()) <= {0.1}
        assert len(scale) == 2 * len(suffixes)                       # encoder and decoder


def test_label_smoothing_reaches_every_training_loss_and_is_checked(tmp_path):
    trainer = Trainer(config(tmp_path, label_smoothing=0.25, steps=3), log=lambda line: None)
    real_loss, seen = trainer.model.loss, []
    def spy(*args, **kwargs):
        seen.append(kwargs.get("label_smoothing"))
        return real_loss(*args, **kwargs)
    trainer.model.loss = spy
    trainer.run()
    assert seen == [0.25] * 3
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            Trainer(config(tmp_path, label_smoothing=bad), log=lambda line: None)


def test_trainer_applies_the_recipe_and_the_flags_change_it(tmp_path):
    trainer = Trainer(config(tmp_path), log=lambda line: None)
    lr = trainer.cfg.lr
    assert trainer.opt.lr_of("encoder.lstm.l0.fwd.W_c") == lr * 0.1
    assert trainer.opt.lr_of("decoder.lstm.l0.fwd.W_co") == lr * 0.1
    assert trainer.opt.lr_of("decoder.lstm.l0.fwd.W_h") == lr
    assert not trainer.model.encoder.lstm.cell().params["W_c"].any()
    other = Trainer(config(tmp_path, peephole_init="uniform", peephole_lr_scale=1.0), log=lambda line: None)
    assert other.opt.lr_of("encoder.lstm.l0.fwd.W_c") == lr and other.model.encoder.lstm.cell().params["W_c"].any()


def test_cli_flags_for_the_recipe_are_saved_with_the_run(tmp_path):
    make_data(tmp_path)
    ok(cli(["train", "--train", "A.tsv", "--steps", 2, "--out", "r", "--peephole-init", "uniform",
            "--peephole-lr-scale", "0.5", "--hidden-size", 8, "--embed-size", 8, "--final-lr-fraction", 0], tmp_path))
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["train"]["final_lr_fraction"] == 0
    assert saved["train"]["peephole_init"] == "uniform" and saved["train"]["peephole_lr_scale"] == 0.5
    assert saved["model"]["peephole_init"] == "uniform"


def test_a_run_saved_before_the_recipe_resumes_with_the_settings_it_trained_with(tmp_path):
    make_data(tmp_path)
    ok(cli(["train", "--train", "A.tsv", "--steps", 2, "--out", "old", "--hidden-size", 8, "--embed-size", 8,
            "--peephole-init", "uniform", "--peephole-lr-scale", "1"], tmp_path))
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    for key in ("peephole_init", "peephole_lr_scale", "valid_size", "combine_lr_scale", "output_bias"):
        del saved["train"][key]
    del saved["model"]["peephole_init"]
    path.write_text(json.dumps(saved))
    r = ok(cli(["train", "--out", "old", "--resume", "--steps", 4, "--metrics-out", "m.json"], tmp_path))
    assert "resumed old at step 2" in r.stdout
    cfg = json.loads((tmp_path / "m.json").read_text())["config"]
    assert (cfg["peephole_init"], cfg["peephole_lr_scale"], cfg["valid_size"]) == ("uniform", 1.0, 2000)
    assert cfg["combine_lr_scale"] == 1.0, "runs saved before it existed trained the combine layer at the full lr"
    assert cfg["output_bias"] == "uniform", "runs saved before it existed started their output bias uniform"


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_attentions_combine_layer_and_only_it_steps_at_lr_times_combine_lr_scale(tmp_path, attention):
    trainer = Trainer(config(tmp_path, attention=attention, combine_lr_scale=0.25, peephole="none"),
                      log=lambda line: None)
    lr = trainer.opt.lr
    scaled = {name for name, _, _ in trainer.model.named_parameters() if trainer.opt.lr_of(name) != lr}
    assert scaled == {"decoder.combine.weight", "decoder.combine.bias"}
    assert trainer.opt.lr_of("decoder.combine.weight") == lr * 0.25
    plain = Trainer(config(tmp_path, attention="none", peephole="none"), log=lambda line: None)
    assert all(plain.opt.lr_of(name) == plain.opt.lr for name, _, _ in plain.model.named_parameters())


def test_metrics_hold_the_learning_curve(tmp_path):
    metrics = Trainer(config(tmp_path, steps=9, eval_every=3), log=lambda line: None).run()
    history = metrics["history"]
    assert [p["step"] for p in history] == [3, 6, 9]
    assert all(set(p) == {"step", "seconds", "exact_match", "token_accuracy", "loss"} for p in history)
    assert all(0 <= p["exact_match"] <= 1 and 0 <= p["token_accuracy"] <= 1 and p["loss"] > 0 for p in history)
    assert [p["seconds"] for p in history] == sorted(p["seconds"] for p in history)
    assert history[-1]["seconds"] <= metrics["train_seconds"]


def test_history_loss_is_the_mean_training_loss_since_the_previous_point(tmp_path):
    lines = []
    trainer = Trainer(config(tmp_path, steps=6, eval_every=3, log_every=1), log=lines.append)
    history = trainer.run()["history"]
    losses = [float(line.split("| loss ")[1].split()[0]) for line in lines if "| loss " in line]
    assert len(losses) == 6
    for k, point in enumerate(history):
        assert point["loss"] == pytest.approx(np.mean(losses[3 * k:3 * k + 3]), abs=1e-4)   # the log rounds


class StepClock:
    """A stand-in for the trainer's clock in which each optimizer step takes exactly `step_seconds` and nothing
    else takes time, so that what a time budget decides does not depend on how fast or loaded the machine is."""

    def __init__(self, step_seconds):
        self.now, self.step_seconds = 1000.0, step_seconds

    def perf_counter(self):
        return self.now

    def tick(self):
        self.now += self.step_seconds


def on_step_clock(monkeypatch, trainer, step_seconds):
    """Run `trainer` on a StepClock: its clock reads the fake time, which advances at each optimizer step."""
    import lstm_np.train as train_module
    clock = StepClock(step_seconds)
    monkeypatch.setattr(train_module, "time", clock)
    real_step = trainer.opt.step

    def step(*pieces):
        real_step(*pieces)
        clock.tick()
    monkeypatch.setattr(trainer.opt, "step", step)
    return clock


def test_time_budget_validates_at_tenths_of_it_and_logs_time_left(tmp_path, monkeypatch):
    lines = []
    trainer = Trainer(config(tmp_path, steps=None, max_seconds=5.0, log_every=4), log=lines.append)
    on_step_clock(monkeypatch, trainer, step_seconds=0.125)   # binary fractions: the sums are exact
    metrics = trainer.run()
    # a point each time a tenth (0.5 s = 4 steps) has passed, none in the budget's last tenth; the run stops at 5 s
    assert [p["step"] for p in metrics["history"]] == [4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert [p["seconds"] for p in metrics["history"]] == [0.5 * k for k in range(1, 10)]
    assert metrics["steps"] == 40 and metrics["train_seconds"] == 5.0
    step_lines = [line for line in lines if line.startswith("step ")]
    assert step_lines[0].startswith("step 4 | 0 s, 4 s left | loss "), step_lines[0]   # 0.5 s done, 4.5 s left
    assert len(step_lines) == 10 and all("/?" not in line for line in step_lines), step_lines[:2]


def test_validation_during_training_uses_valid_size_pairs(tmp_path):
    trainer = Trainer(config(tmp_path, valid_size=2), log=lambda line: None)
    assert len(trainer.valid_pairs) == 2 and trainer.valid_pairs == trainer.splits["valid"][:2]
    assert trainer.valid_max_len == max(len(t) for _, t in trainer.valid_pairs) + 1


def test_stop_at_ends_the_run_at_the_first_validation_point_that_reaches_it(tmp_path):
    learns = dict(steps=300, eval_every=5, lr=0.02, output_bias="uniform")   # on these 60 pairs, this one learns
    full = Trainer(config(tmp_path, **learns), log=lambda line: None).run()["history"]
    target = full[len(full) // 2]["exact_match"]
    assert 0 < target, "the test needs a run that learns something"
    first = next(p["step"] for p in full if p["exact_match"] >= target)
    stopped = Trainer(config(tmp_path, **learns, stop_at=target), log=lambda line: None).run()
    assert stopped["steps"] == first and stopped["history"] == [
        {**p, "seconds": q["seconds"]} for p, q in zip(full, stopped["history"])]


def learning_rates(trainer):
    """The learning rate of each optimizer step `trainer` takes from now on (a list that fills as it runs)."""
    rates, step = [], trainer.opt.step

    def recording_step(*pieces):
        rates.append(trainer.opt.lr)
        step(*pieces)
    trainer.opt.step = recording_step
    return rates


def test_time_budget_fits_the_decay_horizon_to_the_measured_speed(tmp_path, monkeypatch):
    """Under --max-seconds without --decay-steps, the cosine decay ends where the budget does: at each validation
    point the horizon becomes the step the measured speed reaches at the end of the budget."""
    cfg = config(tmp_path, steps=None, max_seconds=5.0, warmup_steps=4, out=str(tmp_path / "run"))
    trainer = Trainer(cfg, log=lambda line: None)
    on_step_clock(monkeypatch, trainer, step_seconds=0.125)     # 8 steps/s: the 5 s budget ends at step 40
    rates = learning_rates(trainer)
    assert trainer.run()["steps"] == 40
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["horizon"] == 40
    # validation at step 4 (0.5 s): horizon 4 + 4.5 s × 8 steps/s = 40, and so at every later point
    assert rates == [ln.WarmupDecay(cfg.lr, 4, 40)(step) for step in range(40)]
    assert rates[-1] < 0.11 * cfg.lr                           # decayed to ~10% of lr by the end of the budget


def test_final_lr_fraction_is_where_the_cosine_decay_ends_and_is_checked(tmp_path):
    cfg = config(tmp_path, steps=12, decay_steps=10, final_lr_fraction=0.01)
    trainer = Trainer(cfg, log=lambda line: None)
    rates = learning_rates(trainer)
    trainer.run()
    low = 0.01 * cfg.lr                                         # no warm-up: cosine from step 0 to step 10
    assert rates[0] == pytest.approx(cfg.lr)
    assert rates[5] == pytest.approx(low + 0.5 * (cfg.lr - low))        # half way: cos(π/2) = 0
    assert rates[10:] == pytest.approx([low, low])                      # the end, and after it
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="final_lr_fraction"):
            Trainer(config(tmp_path, final_lr_fraction=bad), log=lambda line: None)


def test_resumed_time_budget_refits_the_horizon_to_the_new_budget(tmp_path, monkeypatch):
    cfg = config(tmp_path, steps=None, max_seconds=5.0, warmup_steps=4, out=str(tmp_path / "run"))
    first = Trainer(cfg, log=lambda line: None)
    on_step_clock(monkeypatch, first, step_seconds=0.125)
    assert first.run()["steps"] == 40
    resumed = Trainer(cfg, resume=True, log=lambda line: None)  # 5 s more, at the same speed: to step 80
    on_step_clock(monkeypatch, resumed, step_seconds=0.125)
    rates = learning_rates(resumed)
    assert resumed.run()["steps"] == 80
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["state"]["horizon"] == 80
    # until this run's first validation point (step 44) the saved horizon holds; then the new budget's end, from
    # this run's own speed: 44 + 4.5 s × 8 steps/s = 80
    assert rates == ([ln.WarmupDecay(cfg.lr, 4, 40)(step) for step in range(40, 44)]
                     + [ln.WarmupDecay(cfg.lr, 4, 80)(step) for step in range(44, 80)])


def test_a_checkpoint_saved_before_states_had_versions_resumes_to_the_same_bits(tmp_path):
    """A version-1 training state (no "version", no learning curve: lstm_np before it recorded one) loads,
    migrates and continues exactly as today's state of the same step."""
    runs = {}
    for name in ("today", "old"):
        cfg = config(tmp_path, steps=6, eval_every=3, out=str(tmp_path / name))
        Trainer(cfg, log=lambda line: None).run()
        runs[name] = cfg
    path = tmp_path / "old" / "checkpoint.json"
    manifest = json.loads(path.read_text())
    for key in ("version", "history", "loss_window"):
        del manifest["state"][key]
    path.write_text(json.dumps(manifest))
    for name, cfg in runs.items():
        Trainer(dataclasses.replace(cfg, steps=12), resume=True, log=lambda line: None).run()
    weights = {name: np.load(tmp_path / name / json.loads((tmp_path / name / "checkpoint.json").read_text())["weights"])
               for name in runs}
    assert sorted(weights["old"].files) == sorted(weights["today"].files)
    for key in weights["today"].files:
        assert np.array_equal(weights["old"][key], weights["today"][key]), key
    old_state = json.loads(path.read_text())["state"]
    assert old_state["version"] == 2 and [p["step"] for p in old_state["history"]] == [9, 12]


def test_output_bias_starts_at_the_centred_log_frequencies_of_the_targets():
    model = ln.Seq2Seq(6, 5)
    model.init_output_bias(np.array([0, 0, 0, 1, 3]))   # p = (n + 1) / 9 = [1, 1, 1, 2, 4] / 9
    ln2 = np.log(2)                                       # log p - mean = [0, 0, 0, ln 2, 2 ln 2] - 3/5 ln 2
    np.testing.assert_allclose(model.decoder.out.b, [-0.6 * ln2, -0.6 * ln2, -0.6 * ln2, 0.4 * ln2, 1.4 * ln2],
                               rtol=1e-6)
    b = model.decoder.out.b.astype(np.float64)
    np.testing.assert_allclose(np.exp(b) / np.exp(b).sum(), np.array([1, 1, 1, 2, 4]) / 9, rtol=1e-6)
    for bad in (np.array([0, 1, 2]), np.array([0, 0, 0, -1, 3]), np.array([0.0, 0, 0, 1, 3])):
        with pytest.raises(ValueError, match="counts must hold"):
            model.init_output_bias(bad)


def test_a_new_run_starts_its_output_bias_at_the_training_targets_frequencies(tmp_path):
    trainer = Trainer(config(tmp_path), log=lambda line: None)
    vocab, counts = trainer.tgt_vocab, np.zeros(len(trainer.tgt_vocab))
    held_out = {s for s, _ in trainer.splits["valid"]}                # the held-out pairs do not count
    assert held_out
    for line in (tmp_path / "A.tsv").read_text().splitlines():     # counted here from the file, EOS once a line
        src, tgt = line.split("\t")
        if src not in held_out:
            for ch in tgt:
                counts[vocab.encode(ch)[0]] += 1
            counts[ln.EOS] += 1
    log_p = np.log((counts + 1) / (counts + 1).sum())
    np.testing.assert_allclose(trainer.model.decoder.out.b, log_p - log_p.mean(), rtol=1e-5, atol=1e-6)
    uniform = Trainer(config(tmp_path, output_bias="uniform"), log=lambda line: None)
    fresh = ln.Seq2Seq(len(uniform.src_vocab), len(vocab), **uniform.cfg.model_kwargs())
    np.testing.assert_array_equal(uniform.model.decoder.out.b, fresh.decoder.out.b)
    with pytest.raises(ValueError, match="output_bias must be one of"):
        Trainer(config(tmp_path, output_bias="zero"), log=lambda line: None)


def test_a_resumed_run_keeps_its_trained_output_bias(tmp_path):
    first = Trainer(config(tmp_path, out=str(tmp_path / "r"), steps=3), log=lambda line: None)
    prior = first.model.decoder.out.b.copy()
    first.run()
    trained = first.model.decoder.out.b.copy()
    assert not np.array_equal(trained, prior)
    resumed = Trainer(config(tmp_path, out=str(tmp_path / "r"), steps=6), resume=True, log=lambda line: None)
    np.testing.assert_array_equal(resumed.model.decoder.out.b, trained)


def checkpoint_arrays(folder, which):
    return dict(np.load(folder / json.loads((folder / "checkpoint.json").read_text())[which]))


def test_a_run_keeping_a_weight_average_resumes_to_the_same_bits(tmp_path):
    """--average-decay: the average is part of the checkpoint (its optimizer file), so 6 steps then a resume to 12
    end with the weights, Adam's moments and the average of 12 steps straight."""
    straight = config(tmp_path, steps=12, eval_every=3, average_decay=0.9, out=str(tmp_path / "straight"))
    Trainer(straight, log=lambda line: None).run()
    halves = config(tmp_path, steps=6, eval_every=3, average_decay=0.9, out=str(tmp_path / "halves"))
    Trainer(halves, log=lambda line: None).run()
    Trainer(dataclasses.replace(halves, steps=12), resume=True, log=lambda line: None).run()
    for which in ("weights", "optimizer"):
        a, b = checkpoint_arrays(tmp_path / "straight", which), checkpoint_arrays(tmp_path / "halves", which)
        assert sorted(a) == sorted(b) and any(k.startswith("average/") for k in a) == (which == "optimizer")
        for key in a:
            assert np.array_equal(a[key], b[key]), (which, key)
    plain = config(tmp_path, steps=3, out=str(tmp_path / "straight"))          # resumed without an average
    with pytest.raises(ValueError, match="holds a weight average"):
        Trainer(dataclasses.replace(plain, average_decay=0.0), resume=True, log=lambda line: None)


@pytest.mark.parametrize("average_wins", [True, False])
def test_the_final_test_scores_the_weight_average_when_it_validates_best_and_translate_serves_it(tmp_path, monkeypatch,
                                                                                              average_wins):
    """The choice among the last, the best validated and the averaged weights is made on validation; a validator
    that scores the averaged weights 1.0 (or 0.0) and any other 0.5 decides it here. The weights chosen are
    the ones tested and the checkpoint's best (what translate loads); its weights stay the last ones."""
    trainer = Trainer(config(tmp_path, steps=8, eval_every=4, average_decay=0.5, out=str(tmp_path / "r")),
                      log=lambda line: None)
    real_validate = Trainer.validate
    others = [0.5]                              # what any weights but the average score

    def validate(self):
        metrics = real_validate(self)
        averaged = self.average.averaged()
        is_average = all(np.array_equal(v, averaged[n]) for n, v, _ in self.model.named_parameters())
        score = (1.0 if average_wins else 0.0) if is_average else others[0]
        return {**metrics, "exact_match": score, "token_accuracy": score}

    monkeypatch.setattr(Trainer, "validate", validate)
    tested = {}
    real_evaluate = ln.train.evaluate

    def evaluate(model, *args, **kwargs):       # the weights of the last evaluation, the final test's
        tested.update({name: value.copy() for name, value, _ in model.named_parameters()})
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(ln.train, "evaluate", evaluate)
    metrics = trainer.run()
    last = checkpoint_arrays(tmp_path / "r", "weights")
    best = checkpoint_arrays(tmp_path / "r", "best")
    averaged = trainer.average.averaged()
    assert metrics["weights"] == ("average" if average_wins else "last")
    assert metrics["valid_exact_match"] == (1.0 if average_wins else 0.5)
    expected = averaged if average_wins else last
    for name in averaged:
        assert np.array_equal(best[name], expected[name]) and np.array_equal(tested[name], expected[name]), name
    assert not all(np.array_equal(last[n], averaged[n]) for n in averaged)     # the two are different weights
    if average_wins:            # the run resumed at its last step, where the last weights now validate as well
        others[0] = 1.0
        again = Trainer(config(tmp_path, steps=8, eval_every=4, average_decay=0.5, out=str(tmp_path / "r")),
                        resume=True, log=lambda line: None).run()
        assert again["weights"] == "last"
        best = checkpoint_arrays(tmp_path / "r", "best")
        assert all(np.array_equal(best[n], last[n]) for n in last)


def test_split_seed_alone_decides_the_held_out_words(tmp_path):
    """Models of an ensemble differ in --seed and share --split-seed: the same validation words, none trained on."""
    from lstm_np.splits import load_data
    split = {}
    for seed, split_seed in ((0, None), (1, None), (1, 0)):
        splits, _ = load_data(config(tmp_path, seed=seed, split_seed=split_seed))
        split[seed, split_seed] = sorted(splits["valid"])
    assert split[1, 0] == split[0, None] != split[1, None]
