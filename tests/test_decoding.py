"""Greedy and beam decoding: agreement with each other and with the model's own teacher-forced scores,
batch independence, EOS handling, max_len, and the train/eval mode."""
import itertools

import numpy as np
import pytest

from lstm_np.data import BOS, EOS, PAD
from lstm_np.decoding import beam_search, greedy
from test_seq2seq import SRC, make_model

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
