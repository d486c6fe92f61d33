"""Ensembles (ensemble.py): the mean of the members' next-token probabilities, checked against a decoding loop
written here from the members alone; one member decodes as the model itself; and through the command line,
`translate` and `evaluate` with several checkpoints or a folder of runs, with one-line errors for runs that
cannot be ensembled."""
import copy
import json
import re
import shutil
import signal
import urllib.request

import numpy as np
import pytest

from lstm_np.data import BOS, EOS
from lstm_np.ensemble import Ensemble
from lstm_np.run_folder import load_model, trained_max_len
from lstm_np.seq2seq import Seq2Seq

from helpers import SRC, SRC_V, TGT_V, TINY_FLAGS, cli, make_data, make_model, ok, one_line_error, start, write_tsv


def members(attention="luong"):
    return [make_model(peephole="none", bidirectional=True, attention=attention, seed=seed, size=4)
            for seed in (1, 2, 3)]


def reference_greedy(models, src, max_len):
    """Greedy decoding of p = mean of the models' softmax, one model at a time, written from their own
    encode and decoder.forward (no Ensemble)."""
    states = [m.encode(src) for m in models]
    hc = [(s[1], s[2]) for s in states]
    B = src.shape[0]
    ids, out, done = np.full(B, BOS), [[] for _ in range(B)], np.zeros(B, bool)
    for _ in range(max_len):
        probs = []
        for k, (m, (keys, _, _, mask, summary)) in enumerate(zip(models, states)):
            logits, hc[k], _ = m.decoder.forward(ids[None], *hc[k], summary, keys, mask)
            z = logits[0].astype(np.float64)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs.append(e / e.sum(axis=1, keepdims=True))
        ids = np.mean(probs, axis=0).argmax(axis=1)
        for b in np.nonzero(~done)[0]:
            if ids[b] != EOS:
                out[b].append(int(ids[b]))
        done |= ids == EOS
        if done.all():
            break
    return out


@pytest.mark.parametrize("attention", ["luong", None])
def test_the_ensemble_decodes_the_mean_of_its_members_probabilities(attention):
    models = members(attention)
    for m in models:
        m.eval()
    ens = Ensemble(models)
    assert ens.translate(SRC, max_len=6) == reference_greedy(models, SRC, 6)
    # one step of the ensemble's decoder: log of the mean probability, for every row and token
    keys, h, c, mask, summary = ens.encode(SRC)
    log_p, _, _ = ens.decoder.forward(np.full((1, SRC.shape[0]), BOS), h, c, summary, keys, mask)
    probs = []
    for m in models:
        k, h0, c0, msk, s = m.encode(SRC)
        z = m.decoder.forward(np.full((1, SRC.shape[0]), BOS), h0, c0, s, k, msk)[0].astype(np.float64)
        probs.append(np.exp(z) / np.exp(z).sum(axis=2, keepdims=True))
    np.testing.assert_allclose(np.exp(log_p), np.mean(probs, axis=0), rtol=1e-12)


def test_an_ensemble_of_one_model_or_of_copies_of_it_decodes_as_the_model():
    """Copies have the model's distribution, so beam search over their states side by side (rows repeated and
    reordered in every copy's part) must find the model's own hypotheses."""
    model = members()[0]
    for ens in (Ensemble([model]), Ensemble([model, copy.deepcopy(model), copy.deepcopy(model)])):
        for beam in (1, 3):
            assert ens.translate(SRC, max_len=6, beam_size=beam) == model.translate(SRC, max_len=6, beam_size=beam)


def test_models_that_cannot_decode_together_are_refused():
    with pytest.raises(ValueError, match="at least one model"):
        Ensemble([])
    with pytest.raises(ValueError, match="num_layers"):
        Ensemble([make_model(attention="luong"), make_model(attention="luong", num_layers=2)])
    with pytest.raises(ValueError, match="tgt_vocab_size"):
        Ensemble([make_model(attention="luong"), Seq2Seq(SRC_V, TGT_V + 1, embed_size=3, hidden_size=3, dtype=np.float64)])
    with pytest.raises(ValueError, match="share dtype"):
        Ensemble([make_model(attention="luong"), make_model(attention="luong", dtype=np.float32)])
    with pytest.raises(TypeError, match=r"models\[1\] must be a Seq2Seq"):
        Ensemble([make_model(attention="luong"), "model.npz"])


def edit_distance(a, b):
    """Levenshtein distance of two token lists, the textbook dynamic programme."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


# ------------------------------------------------------------------------------------------------ the command line
def train_members(tmp_path, seeds=(0, 1), split_seed=0, folder="ens"):
    make_data(tmp_path)
    for seed in seeds:
        ok(cli(["train", "--train", "A.tsv", *TINY_FLAGS, "--steps", 30, "--lr", "0.03", "--seed", seed,
                "--split-seed", split_seed, "--out", f"{folder}/model-{seed}"], tmp_path))


def test_translate_and_evaluate_take_several_checkpoints_or_a_folder_of_runs(tmp_path):
    train_members(tmp_path)
    sources = "abc\nba\ncab\n"
    two = ok(cli(["translate", "--checkpoint", "ens/model-0", "--checkpoint", "ens/model-1"], tmp_path, stdin=sources))
    folder = ok(cli(["translate", "--checkpoint", "ens"], tmp_path, stdin=sources))
    assert two.stdout == folder.stdout and len(two.stdout.splitlines()) == 3
    r = ok(cli(["evaluate", "--checkpoint", "ens", "--held-out", "--beam-size", 3, "--metrics-out", "m.json"],
               tmp_path))
    assert "2 models" in r.stdout and "validation pairs held out of" in r.stdout, r.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["beam_size"] == 3 and len(m["checkpoints"]) == 2 and m["test_set"] == "held-out"
    # on a test file: the token error rate of the mean distribution's greedy outputs, decoded here by
    # reference_greedy from the two runs' best weights at the runs' output limit
    ok(cli(["evaluate", "--checkpoint", "ens", "--test", "B.tsv", "--metrics-out", "t.json"], tmp_path))
    models, vocabs = [], None
    for folder in ("model-0", "model-1"):
        model, src_vocab, tgt_vocab, _ = load_model(str(tmp_path / "ens" / folder))
        models.append(model.eval())
        vocabs = src_vocab, tgt_vocab
    limit = trained_max_len(str(tmp_path / "ens" / "model-0"))
    refs = dict(line.split("\t") for line in (tmp_path / "B.tsv").read_text().splitlines())
    errors = length = exact = 0
    for src, ref in refs.items():
        out = reference_greedy(models, np.array([vocabs[0].encode(src) + [EOS]]), limit)[0]
        ref_ids = vocabs[1].encode(ref)
        errors, length, exact = errors + edit_distance(out, ref_ids), length + len(ref_ids), exact + (out == ref_ids)
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["test_examples"] == len(refs) and t["test_exact_match"] == exact / len(refs)
    assert t["test_token_error_rate"] == pytest.approx(errors / length, rel=1e-12)
    # a single run scores on the held-out pairs, greedily, what it validated its chosen weights at: its first
    # --valid-size held-out pairs (here the first of the 2 sources its final test scored)
    ok(cli(["train", "--train", "A.tsv", *TINY_FLAGS, "--steps", 30, "--lr", "0.03", "--valid-size", 1,
            "--out", "one", "--metrics-out", "one.json"], tmp_path))
    ok(cli(["evaluate", "--checkpoint", "one", "--held-out", "--metrics-out", "e.json"], tmp_path))
    trained, evaluated = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "e.json"))
    assert (trained["test_examples"], evaluated["test_examples"]) == (2, 1)
    assert evaluated["test_exact_match"] == trained["valid_exact_match"]


def test_a_folder_holding_one_run_serves_it(tmp_path):
    train_members(tmp_path, seeds=(0,))
    proc = start(["serve", "--checkpoint", "ens", "--port", 0], tmp_path)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"{line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        with urllib.request.urlopen(match.group(0) + "api/model", timeout=60) as answer:
            assert json.load(answer)["name"] == "model-0"          # the run inside the folder
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0


def test_runs_that_cannot_be_ensembled_are_one_line_errors(tmp_path):
    train_members(tmp_path)
    one_line_error(cli(["translate", "--checkpoint", "ens", "--plot-attention", "a.png", "abc"], tmp_path),
                   "--plot-attention shows one model")
    one_line_error(cli(["translate", "--checkpoint", "nowhere", "abc"], tmp_path), "nowhere",
                   "neither a run written by 'lstm-np train' nor a folder of such runs")
    one_line_error(cli(["serve", "--checkpoint", "ens", "--port", "0"], tmp_path), "ens holds 2 runs",
                   "--checkpoint ens/model-0")
    one_line_error(cli(["translate", "--checkpoint", "ens", "--checkpoint", "ens/model-1", "abc"], tmp_path),
                   "ens/model-1 is named twice")
    one_line_error(cli(["train", "--train", "A.tsv", "--valid", "B.tsv", "--split-seed", 1], tmp_path),
                   "--split-seed", "--valid")
    one_line_error(cli(["train", "--task", "addition", "--split-seed", 1], tmp_path), "--split-seed", "built-in")
    train_members(tmp_path, seeds=(2,), split_seed=5, folder="other")      # other validation words
    shutil.copytree(tmp_path / "other" / "model-2", tmp_path / "ens" / "model-2")
    one_line_error(cli(["evaluate", "--checkpoint", "ens", "--held-out"], tmp_path), "holds out other validation words")
    write_tsv(tmp_path / "C.tsv", [("xyz", "zyx"), ("zz", "zz")] * 20)       # other letters: other vocabularies
    ok(cli(["train", "--train", "C.tsv", *TINY_FLAGS, "--steps", 2, "--out", "ens/model-9"], tmp_path))
    one_line_error(cli(["translate", "--checkpoint", "ens", "abc"], tmp_path), "vocabularies differ")
