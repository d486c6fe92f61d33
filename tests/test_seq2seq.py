"""Seq2Seq: the teacher-forced loss and its hand-written backward, padding invariances, training, bad input."""
import numpy as np
import pytest

from lstm_np.data import BOS, EOS, PAD, lengths_of, reverse_within_lengths
from lstm_np.optim import Adam
from lstm_np.seq2seq import Seq2Seq

from helpers import (SRC, SRC_V, TGT, TGT_V, assert_loss_grads_match_finite_differences, copy_weights, grads_of,
                     make_model)

# ---------------------------------------------------------------------------------------------------
# the backward is the derivative of the loss
ARCHS = {"1L": dict(num_layers=1, bidirectional=False, size=3),
         "2L-bi": dict(num_layers=2, bidirectional=True, size=2)}
# Every peephole variant on both architectures; defaults (peeky on; reverse_source on for 1L only), and the
# other peeky / reverse_source combinations spread over them (2L-bi checks are the slow ones: three only).
GRAD_CONFIGS = (
    [(p, "1L", {}) for p in ("full", "diagonal", "none")]
    + [("full", "2L-bi", {}), ("diagonal", "2L-bi", {}),
       ("none", "2L-bi", dict(peeky=False, reverse_source=True))]
    + [("full", "1L", dict(peeky=False, reverse_source=True)),
       ("diagonal", "1L", dict(peeky=False, reverse_source=False)),
       ("none", "1L", dict(peeky=True, reverse_source=False))])


@pytest.mark.parametrize("peephole,arch,kwargs", GRAD_CONFIGS,
                         ids=[f"{p}-{a}-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
                              for p, a, kw in GRAD_CONFIGS])
def test_loss_grads_match_finite_differences(peephole, arch, kwargs):
    model = make_model(peephole, seed=11, **ARCHS[arch], **kwargs)
    if not kwargs:
        assert model.peeky and model.reverse_source == (arch == "1L"), "documented defaults"
    assert_loss_grads_match_finite_differences(model, SRC, TGT)


@pytest.mark.parametrize("attention", [None, "luong"])
def test_label_smoothed_loss_grads_match_finite_differences(attention):
    model = make_model("full", 1, True, attention=attention, seed=13)
    real_loss = model.loss
    plain = real_loss(SRC, TGT)
    model.loss = lambda src, tgt: real_loss(src, tgt, label_smoothing=0.2)
    assert model.loss(SRC, TGT) != pytest.approx(plain, rel=1e-6), "smoothing must change the loss"
    assert_loss_grads_match_finite_differences(model, SRC, TGT)


@pytest.mark.parametrize("attention", [None, "luong"])
def test_embedding_output_and_between_layer_dropout_grads_match_finite_differences(attention):
    """Dropout on both embeddings, on the output layer's input and between layers, with the same masks at every
    evaluation (each loss call restarts both dropout generators from the same state)."""
    model = make_model("full", 2, True, attention=attention, seed=12, dropout=0.3, embed_dropout=0.3,
                       output_dropout=0.4)
    generators = (model.encoder.lstm.rng, model.decoder.lstm.rng)
    states = [g.bit_generator.state for g in generators]
    real_loss = model.loss

    def same_masks_loss(src, tgt):
        for g, state in zip(generators, states):
            g.bit_generator.state = state
        return real_loss(src, tgt)
    model.loss = same_masks_loss
    dropped = model.loss(SRC, TGT)
    assert model.decoder._embed_mask is not None and (model.decoder._out_mask == 0).any(), "masks must drop units"
    assert dropped != pytest.approx(real_loss.__self__.eval().loss(SRC, TGT), rel=1e-6), "dropout must change the loss"
    model.train()
    assert_loss_grads_match_finite_differences(model, SRC, TGT)


def test_dropout_rates_are_checked_and_saved_in_the_config():
    model = Seq2Seq(6, 6, embed_dropout=0.25, output_dropout=0.5)
    assert (model.config["embed_dropout"], model.config["output_dropout"]) == (0.25, 0.5)
    for name in ("embed_dropout", "output_dropout"):
        for bad in (1.0, -0.1, "0.2"):
            with pytest.raises((ValueError, TypeError), match=name):
                Seq2Seq(6, 6, **{name: bad})


def test_gradients_accumulate_until_zero_grad():
    model = make_model(seed=2)
    _, g1 = grads_of(model, SRC, TGT)
    model.loss(SRC, TGT)
    model.backward()
    for name, _, g in model.named_parameters():
        np.testing.assert_allclose(g, 2 * g1[name], rtol=1e-12, atol=1e-15, err_msg=name)


# ---------------------------------------------------------------------------------------------------
# the loss is the mean cross-entropy over real target tokens, whatever the padding
def teacher_forced_logprobs(model, src_row, targets):
    """log p(y_j | y_<j, x) of one sentence, decoding ONE step at a time through `model.decoder`
    (the path of greedy/beam decoding, not the batched teacher-forced one `loss` takes)."""
    keys, h, c, mask, summary = model.encode(np.asarray([src_row]))
    out, prev = [], BOS
    for y in targets:
        logits, (h, c), _ = model.decoder.forward(np.array([[prev]]), h, c, summary, keys, mask)
        z = logits[0, 0].astype(np.float64)
        out.append(z[y] - z.max() - np.log(np.exp(z - z.max()).sum()))   # log softmax(z)[y]
        prev = y
    return np.array(out)


@pytest.mark.parametrize("attention", [None, "bahdanau"])
def test_loss_is_mean_over_real_tokens_of_stepwise_single_sentence_log_probs(attention):
    model = make_model("diagonal", 2, True, attention=attention, seed=4, reverse_source=True)
    logps = [teacher_forced_logprobs(model, s[s != PAD], t[t != PAD]) for s, t in zip(SRC, TGT)]
    expected = -np.concatenate(logps).mean()       # mean over tokens, not a mean of per-sentence means
    assert model.loss(SRC, TGT) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("attention", [None, "luong"])
def test_pad_columns_after_eos_in_tgt_change_neither_loss_nor_grads(attention):
    model = make_model("full", 2, True, attention=attention, seed=5)
    loss, grads = grads_of(model, SRC, TGT)
    tgt_padded = np.concatenate([TGT, np.full((3, 2), PAD)], axis=1)
    loss2, grads2 = grads_of(model, SRC, tgt_padded)
    assert loss2 == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("attention", [None, "luong-general"])
@pytest.mark.parametrize("reverse_source", [False, True])
def test_padded_src_column_changes_neither_loss_nor_grads(attention, reverse_source):
    model = make_model("full", 2, True, attention=attention, seed=6, reverse_source=reverse_source)
    loss, grads = grads_of(model, SRC, TGT)
    loss2, grads2 = grads_of(model, np.concatenate([SRC, np.full((3, 1), PAD)], axis=1), TGT)
    assert loss2 == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("attention,bidirectional", [(None, False), (None, True), ("bahdanau", True)])
def test_reverse_source_equals_reversing_the_source_by_hand(attention, bidirectional):
    reversed_model = make_model("full", 1, bidirectional, attention=attention, seed=7, reverse_source=True)
    plain = make_model("full", 1, bidirectional, attention=attention, seed=8, reverse_source=False)
    copy_weights(plain, reversed_model)
    src_rev = reverse_within_lengths(SRC, lengths_of(SRC))
    assert src_rev[2].tolist() == [2, 3, 6, 0], "reversed within its length, padding kept in place"
    loss, grads = grads_of(reversed_model, SRC, TGT)
    loss2, grads2 = grads_of(plain, src_rev, TGT)
    assert loss2 == pytest.approx(loss, rel=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-10, atol=1e-14, err_msg=name)
    assert reversed_model.translate(SRC, max_len=6) == plain.translate(src_rev, max_len=6)


# ---------------------------------------------------------------------------------------------------
# it learns, in its default float32
def test_float32_model_learns_a_tiny_copy_task():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(4, 8, size=rng.integers(1, 4))) for _ in range(8)]
    width = max(len(r) for r in rows) + 1
    src = np.array([r + [EOS] + [PAD] * (width - len(r) - 1) for r in rows])
    tgt = src.copy()                                                   # copy the sentence, EOS included
    model = Seq2Seq(8, 8, embed_size=8, hidden_size=16, seed=0)
    assert all(v.dtype == np.float32 for _, v, _ in model.named_parameters())
    opt = Adam(model.named_parameters(), lr=0.03)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(model.loss(src, tgt))
        model.backward()
        opt.step()
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert all(v.dtype == np.float32 and g.dtype == np.float32 for _, v, g in model.named_parameters())


# ---------------------------------------------------------------------------------------------------
# parameters
@pytest.mark.parametrize("attention", [None, "luong", "luong-general", "bahdanau"])
def test_named_parameters_are_unique_and_zero_grad_zeroes_them_all(attention):
    model = make_model("full", 2, True, attention=attention, seed=9)
    params = model.named_parameters()
    names = [name for name, _, _ in params]
    assert len(names) == len(set(names)), "duplicate parameter names"
    assert len({id(v) for _, v, _ in params}) == len(params), "two names share one array"
    assert any(n.startswith("encoder.") for n in names) and any(n.startswith("decoder.") for n in names)
    if attention:
        assert any(n.startswith("decoder.attn.") for n in names) == (attention != "luong")
        assert any(n.startswith("decoder.combine.") for n in names)
    model.loss(SRC, TGT)
    model.backward()
    assert all(np.any(g) for _, _, g in params)
    model.zero_grad()
    assert not any(np.any(g) for _, _, g in model.named_parameters())


# ---------------------------------------------------------------------------------------------------
# bad input raises an error that names the argument
IDS = r"{} token ids must lie in \[0, "
INTEGER = "{} must be an integer array of token ids"
TWO_D = r"{} must be a non-empty 2-D array \(batch, length\)"
RIGHT = "{} must be right-padded"


def test_bad_token_arrays_raise_naming_the_argument():
    model = make_model(seed=1)
    good_src, good_tgt = SRC, TGT
    cases = [
        (dict(src=np.array([[4, SRC_V, 2]]), tgt=good_tgt[:1]), ValueError, IDS.format("src")),  # id == vocab size
        (dict(src=np.array([[4, -1, 2]]), tgt=good_tgt[:1]), ValueError, IDS.format("src")),
        (dict(src=good_src, tgt=np.array([[4, TGT_V, 2]] * 3)), ValueError, IDS.format("tgt")),
        (dict(src=good_src, tgt=np.array([[4, -3, 2]] * 3)), ValueError, IDS.format("tgt")),
        (dict(src=good_src.astype(float), tgt=good_tgt), TypeError, INTEGER.format("src")),
        (dict(src=good_src, tgt=good_tgt.astype(np.float32)), TypeError, INTEGER.format("tgt")),
        (dict(src=good_src[0], tgt=good_tgt), ValueError, TWO_D.format("src")),             # 1-D
        (dict(src=good_src, tgt=good_tgt[0]), ValueError, TWO_D.format("tgt")),
        (dict(src=np.zeros((3, 0), int), tgt=good_tgt), ValueError, TWO_D.format("src")),
        (dict(src=good_src[:2], tgt=good_tgt), ValueError, "src and tgt must have the same batch size"),
        (dict(src=np.array([[0, 4, 5, 2]] * 3), tgt=good_tgt), ValueError, RIGHT.format("src")),  # left-padded
        (dict(src=np.array([[4, 0, 5, 2]] * 3), tgt=good_tgt), ValueError, RIGHT.format("src")),  # PAD in the middle
        (dict(src=good_src, tgt=np.array([[4, 0, 2]] * 3)), ValueError, RIGHT.format("tgt")),
        (dict(src=good_src, tgt=np.array([[4, 2], [0, 0], [5, 2]])), ValueError, "tgt has a row with no real token"),
    ]
    for kwargs, exc, name in cases:
        with pytest.raises(exc, match=name):
            model.loss(**kwargs)
    translate_cases = [(np.array([[4, 9, 2]]), ValueError, IDS), (np.array([[4.0, 2.0]]), TypeError, INTEGER),
                       (np.array([4, 2]), ValueError, TWO_D), (np.array([[4, 0, 2]]), ValueError, RIGHT)]
    for bad_src, exc, message in translate_cases:
        with pytest.raises(exc, match=message.format("src")):
            model.translate(bad_src)


def test_bad_constructor_arguments_raise_naming_the_argument():
    with pytest.raises(ValueError, match="attention"):
        Seq2Seq(SRC_V, TGT_V, attention="dot-product")
    with pytest.raises(ValueError, match="peephole"):
        Seq2Seq(SRC_V, TGT_V, peephole="partial")
    with pytest.raises(ValueError, match="src_vocab_size"):
        Seq2Seq(3, TGT_V)
    with pytest.raises(ValueError, match="tgt_vocab_size"):
        Seq2Seq(SRC_V, 2.5)


def test_backward_without_a_fresh_loss_raises():
    model = make_model(seed=1)
    with pytest.raises(ValueError, match="loss"):
        model.backward()                                  # before any loss
    model.loss(SRC, TGT)
    model.translate(SRC, max_len=3)                       # decoding overwrites the modules' caches
    with pytest.raises(ValueError, match="loss"):
        model.backward()
    model.loss(SRC, TGT)
    model.backward()
    with pytest.raises(ValueError, match="loss"):
        model.backward()                                  # the same loss twice


@pytest.mark.parametrize("bad", [dict(src=np.array([[4, SRC_V, 2]] * 3)), dict(tgt=TGT.astype(float)),
                                 dict(label_smoothing=1.0)],
                         ids=["src-id-out-of-range", "float-tgt", "label-smoothing-one"])
def test_backward_after_a_failed_loss_is_an_error_not_the_previous_gradients(bad):
    model = make_model(seed=1)
    model.loss(SRC, TGT)
    with pytest.raises((ValueError, TypeError)):
        model.loss(**dict(dict(src=SRC, tgt=TGT), **bad))   # validation fails: this loss did not happen
    model.zero_grad()
    with pytest.raises(ValueError, match=r"backward\(\) needs .*loss\(\)"):
        model.backward()                                     # must not differentiate the previous loss instead
    assert not any(np.any(g) for _, _, g in model.named_parameters()), "gradients were accumulated"


@pytest.mark.parametrize("kwargs,name", [
    (dict(beam_size=0), "beam_size"), (dict(beam_size=-2), "beam_size"), (dict(beam_size=2.0), "beam_size"),
    (dict(beam_size=True), "beam_size"), (dict(beam_size="3"), "beam_size"),
    (dict(max_len=0), "max_len"), (dict(max_len=-1), "max_len"), (dict(max_len=5.5), "max_len"),
    (dict(length_penalty=float("nan")), "length_penalty"), (dict(length_penalty=-1.0), "length_penalty"),
    (dict(length_penalty="1"), "length_penalty"),
])
def test_bad_decoding_arguments_raise_naming_the_argument(kwargs, name):
    model = make_model(seed=1)
    with pytest.raises(ValueError, match=name):
        model.translate(SRC, **kwargs)
