"""Greedy and beam decoding: agreement with each other and with the model's own teacher-forced scores,
batch independence, EOS handling, max_len, and the train/eval mode."""
import itertools

import numpy as np
import pytest

from lstm_np.data import BOS, EOS, PAD
from lstm_np.decoding import beam_search, greedy
from reference import reference_lstm

from helpers import SRC, make_model

MAX_LEN = 6
# Untrained random models of every kind: architecture, attention, peephole, reverse_source.
MODEL_CONFIGS = [dict(peephole="full", attention=None),
                 dict(peephole="diagonal", attention="luong", bidirectional=True),
                 dict(peephole="none", attention="bahdanau", reverse_source=True),
                 dict(peephole="full", attention="luong-general", num_layers=2, bidirectional=True),
                 dict(peephole="diagonal", attention=None, num_layers=2, bidirectional=True, peeky=False)]


def models(per_config=1):
    """Untrained models in eval mode: `per_config` seeds of every configuration."""
    for rep in range(per_config):
        for i, config in enumerate(MODEL_CONFIGS):
            yield make_model(seed=100 + 10 * rep + i, **config).eval()


def random_src(rng, B=4, S=5, vocab=7):
    """Right-padded source rows of random lengths (a bare [EOS] row included), each ending in EOS."""
    lengths = rng.integers(1, S + 1, size=B)
    lengths[0] = 1
    src = np.full((B, S), PAD)
    for b, n in enumerate(lengths):
        src[b, :n - 1] = rng.integers(4, vocab, size=n - 1)
        src[b, n - 1] = EOS
    return src


def sequence_score(model, src_row, tokens, max_len, length_penalty):
    """The documented score of a decoded hypothesis, computed independently by teacher forcing the whole
    sequence at once: Σ_j log softmax(logits_j)[y_j] / n^α over y = tokens + [EOS], where EOS is absent
    exactly when the hypothesis was cut at max_len (len(tokens) == max_len)."""
    ys = list(tokens) + ([] if len(tokens) == max_len else [EOS])
    keys, h0, c0, mask, summary = model.encode(np.asarray([src_row]))
    dec_in = np.array([[BOS] + ys[:-1]]).T                                            # (n, 1)
    logits, _, _ = model.decoder.forward(dec_in, h0, c0, summary, keys, mask)
    z = logits[:, 0].astype(np.float64)                                              # (n, V)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return logp[np.arange(len(ys)), ys].sum() / len(ys) ** length_penalty


def real(row):
    return row[row != PAD]


# ---------------------------------------------------------------------------------------------------
def test_beam_size_one_is_greedy_exactly():
    rng = np.random.default_rng(0)
    for model in models():
        src = random_src(rng)
        tokens, _ = greedy(model, src, MAX_LEN)
        assert model.translate(src, max_len=MAX_LEN, beam_size=1) == tokens
        assert beam_search(model, src, MAX_LEN, 1) == tokens


def test_batched_greedy_equals_each_sentence_decoded_alone():
    rng = np.random.default_rng(1)
    for model in models():
        src = random_src(rng)
        tokens, scores = greedy(model, src, MAX_LEN)
        for b in range(src.shape[0]):
            alone, alone_score = greedy(model, real(src[b])[None], MAX_LEN)
            assert alone == [tokens[b]]
            assert alone_score[0] == pytest.approx(scores[b], rel=1e-12)


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
def test_greedy_score_equals_teacher_forced_score_and_outputs_are_the_argmax_path(length_penalty):
    """Greedy returns the argmax path: teacher forcing its output reproduces it token by token, ending in
    EOS unless cut at max_len; EOS is stripped; the score it reports is that path's documented score."""
    rng = np.random.default_rng(2)
    for model in models():
        src = random_src(rng)
        tokens, scores = greedy(model, src, MAX_LEN, length_penalty)
        for b, out in enumerate(tokens):
            assert EOS not in out and len(out) <= MAX_LEN
            ys = out + ([] if len(out) == MAX_LEN else [EOS])
            keys, h0, c0, mask, summary = model.encode(real(src[b])[None])
            logits, _, _ = model.decoder.forward(np.array([[BOS] + ys[:-1]]).T, h0, c0, summary, keys, mask)
            assert logits[:, 0].argmax(axis=1).tolist() == ys
            expected = sequence_score(model, real(src[b]), out, MAX_LEN, length_penalty)
            assert scores[b] == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("beam_size", [2, 3, 5])
def test_beam_never_scores_below_greedy(beam_size):
    """Scores recomputed independently by teacher forcing, over 20 untrained models and inputs. This also
    catches a beam that stops early (k hypotheses finished) and returns a still-unfinished prefix: its
    score without EOS may beat greedy, but as a translation it ends with EOS, and then falls below."""
    strictly_better = 0
    for rep, model in enumerate(models(per_config=4)):
        src = random_src(np.random.default_rng(rep // len(MODEL_CONFIGS)))
        for length_penalty in (0.0, 1.0):
            g_tokens, _ = greedy(model, src, MAX_LEN, length_penalty)
            b_tokens = beam_search(model, src, MAX_LEN, beam_size, length_penalty)
            for b in range(src.shape[0]):
                assert EOS not in b_tokens[b] and len(b_tokens[b]) <= MAX_LEN
                g = sequence_score(model, real(src[b]), g_tokens[b], MAX_LEN, length_penalty)
                s = sequence_score(model, real(src[b]), b_tokens[b], MAX_LEN, length_penalty)
                assert s >= g - 1e-12, (f"beam {beam_size}, α={length_penalty}, sentence {b}: "
                                        f"beam {b_tokens[b]} scores {s:.6f} < greedy {g_tokens[b]} {g:.6f}")
                strictly_better += s > g + 1e-9
    assert strictly_better > 0, "the beam never beat greedy: the check above proves little"


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_as_wide_as_every_candidate_finds_the_exhaustive_optimum(length_penalty):
    """k = V^max_len keeps every prefix and every candidate, so beam search becomes exhaustive search."""
    max_len, V = 3, 6
    src = np.array([[4, 5, 2]])
    for model in models():
        best = max((sequence_score(model, src[0], list(y), max_len, length_penalty), list(y))
                   for n in range(max_len + 1) for y in itertools.product(range(V), repeat=n) if EOS not in y)
        assert beam_search(model, src, max_len, V ** max_len, length_penalty) == [best[1]]


@pytest.mark.parametrize("beam_size", [2, 3])
def test_batched_beam_equals_each_sentence_alone(beam_size):
    rng = np.random.default_rng(4)
    for model in models():
        src = random_src(rng)
        batched = model.translate(src, max_len=MAX_LEN, beam_size=beam_size)
        alone = [model.translate(real(row)[None], max_len=MAX_LEN, beam_size=beam_size)[0] for row in src]
        assert batched == alone


# ---------------------------------------------------------------------------------------------------
# EOS, max_len, mode
@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_stops_at_eos_strips_it_and_respects_max_len(beam_size):
    model = make_model(seed=5, attention="luong").eval()
    src = np.array([[4, 5, 2], [6, 2, 0]])
    model.decoder.out.b[EOS] = 50.0                                  # EOS is certain at every step
    assert model.translate(src, max_len=4, beam_size=beam_size) == [[], []]
    model.decoder.out.b[EOS] = -50.0
    model.decoder.out.b[4] = 50.0                                    # token 4 is certain, EOS never comes
    for max_len in (1, 3):
        assert model.translate(src, max_len=max_len, beam_size=beam_size) == [[4] * max_len] * 2
    for model in models():
        for max_len in (1, 2, 4):
            out = model.translate(random_src(np.random.default_rng(max_len)), max_len=max_len,
                                  beam_size=beam_size)
            assert all(len(o) <= max_len and EOS not in o for o in out)


def test_translate_leaves_the_train_eval_mode_as_it_was_and_decodes_without_dropout():
    model = make_model(num_layers=2, seed=6, dropout=0.5)
    src = SRC
    model.eval()
    expected = model.translate(src, max_len=MAX_LEN, beam_size=2)
    assert not model.training
    model.train()
    assert model.translate(src, max_len=MAX_LEN, beam_size=2) == expected      # no dropout while decoding
    assert model.translate(src, max_len=MAX_LEN) == model.eval().translate(src, max_len=MAX_LEN)
    model.train()
    with pytest.raises(ValueError, match="src"):
        model.translate(np.array([[4, 99, 2]]))
    assert model.training, "a failed translate must restore the mode too"
    model.translate(src, max_len=2)
    assert model.training


@pytest.mark.parametrize("beam_size", [1, 3])
def test_source_that_is_only_eos_decodes(beam_size):
    for model in models():
        alone = model.translate(np.array([[EOS]]), max_len=MAX_LEN, beam_size=beam_size)
        batched = model.translate(np.array([[EOS, PAD, PAD], [4, 5, EOS]]), max_len=MAX_LEN,
                                  beam_size=beam_size)
        assert len(alone) == 1 and len(alone[0]) <= MAX_LEN
        assert batched[0] == alone[0]


# ---------------------------------------------------------------------------------------------------
# trace: the per-step LSTM values behind a decoded output
STEP_NAMES = ["i", "f", "o", "c_tilde", "c", "h"]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_trace_decoder_values_are_those_of_step_by_step_decoding(beam_size):
    """The trace replays the decoder teacher-forced in one call; decoding ran it one step at a time. Fed
    the same tokens (BOS, y_1 .. y_n, plus the step after y_n), every layer's gates and states agree."""
    rng = np.random.default_rng(7)
    for model in models():
        src = random_src(rng)
        outputs = model.translate(src, max_len=MAX_LEN, beam_size=beam_size)
        traces = model.trace(src, outputs)
        L = model.decoder.lstm.num_layers
        for b, (out, tr) in enumerate(zip(outputs, traces)):
            keys, h, c, mask, summary = model.encode(src[b:b + 1])
            stepwise = [{name: [] for name in STEP_NAMES} for _ in range(L)]
            for token in [BOS] + out:
                _, (h, c), _ = model.decoder.forward(np.array([[token]]), h, c, summary, keys, mask)
                for layer in range(L):
                    for name, v in model.decoder.lstm.step_values(layer).items():
                        stepwise[layer][name].append(v[0, 0])
            assert len(tr["decoder"]) == L
            for layer in range(L):
                assert list(tr["decoder"][layer]) == STEP_NAMES
                for name in STEP_NAMES:
                    got = tr["decoder"][layer][name]
                    assert got.shape == (len(out) + 1, model.decoder.lstm.hidden_size), (name, got.shape)
                    np.testing.assert_allclose(got, np.array(stepwise[layer][name]), rtol=0, atol=1e-12,
                                               err_msg=f"row {b} layer {layer} {name}")


def test_trace_encoder_values_follow_the_reference_equations_in_reading_order():
    """Per sentence, without its padding: the encoder stack rerun by the plain reference on the embedded
    source in the encoder's reading order; step t of a direction holds the values of the step that read
    source position positions[t]."""
    rng = np.random.default_rng(8)
    for model in models():
        src = random_src(rng)
        traces = model.trace(src, model.translate(src, max_len=MAX_LEN))
        enc = model.encoder.lstm
        for b, tr in enumerate(traces):
            row = src[b][src[b] != PAD]
            m = len(row)
            reading = row[::-1] if model.reverse_source else row                  # what the encoder reads
            record = {}
            reference_lstm(enc, model.encoder.embed.W[reading][:, None, :], record=record)
            assert len(tr["encoder"]) == enc.num_layers
            for layer, directions in enumerate(tr["encoder"]):
                assert len(directions) == enc.num_directions
                for d, values in enumerate(directions):
                    index = np.arange(m) if d == 0 else np.arange(m)[::-1]       # input index read at step t
                    np.testing.assert_array_equal(row[values["positions"]], reading[index],
                                                  err_msg=f"row {b} layer {layer} direction {d} positions")
                    for name in STEP_NAMES:
                        assert values[name].shape == (m, enc.hidden_size)
                        np.testing.assert_allclose(values[name], record[layer, d][name][index, 0], rtol=0,
                                                   atol=1e-12, err_msg=f"row {b} layer {layer} direction {d} {name}")


def test_trace_attention_is_translates_attention_over_the_real_source_positions():
    rng = np.random.default_rng(9)
    for model in models():
        src = random_src(rng)
        outputs, attention = model.translate(src, max_len=MAX_LEN, return_attention=True)
        for b, tr in enumerate(model.trace(src, outputs)):
            if model.attention is None:
                assert tr["attention"] is None
                continue
            m = int((src[b] != PAD).sum())
            assert tr["attention"].shape == (len(outputs[b]) + 1, m)
            np.testing.assert_array_equal(tr["attention"], attention[b][:, :m])
            np.testing.assert_allclose(tr["attention"].sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_trace_restores_the_mode_and_rejects_outputs_that_do_not_fit():
    model = make_model(num_layers=2, seed=6, dropout=0.5, attention="luong")
    outputs = model.translate(SRC, max_len=MAX_LEN)
    assert model.training
    first = model.trace(SRC, outputs)
    assert model.training, "trace must leave the mode as it was"
    again = model.trace(SRC, outputs)                   # eval mode inside: no dropout, the same values
    np.testing.assert_array_equal(first[0]["decoder"][1]["h"], again[0]["decoder"][1]["h"])
    with pytest.raises(ValueError, match="outputs"):
        model.trace(SRC, outputs[:1])
    with pytest.raises(ValueError, match="ids"):
        model.trace(SRC, [[4], [99], []])
    assert model.training, "a failed trace must restore the mode too"
