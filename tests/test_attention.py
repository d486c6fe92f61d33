"""Attention: the three scores against a plain reference, masking of padded keys, hand-written backward
(alone and through the whole Seq2Seq loss), and the attention weights `translate` returns."""
import numpy as np
import pytest

from lstm_np.attention import ATTENTIONS, Attention
from lstm_np.data import BOS, PAD, lengths_of, reverse_within_lengths
from lstm_np.gradcheck import check_gradients

from helpers import SRC, TGT, assert_loss_grads_match_finite_differences, copy_weights, make_model

LENGTHS = np.array([5, 2, 4])                       # key lengths per batch row: one full, two padded


def make_attention(kind, seed=0, B=3, T=4, S=5, H=3):
    """An Attention with random weights, queries, keys (random on padded positions too) and its mask."""
    rng = np.random.default_rng(seed)
    attn = Attention(kind, H, dtype=np.float64, seed=seed)
    for _, value, _ in attn.named_parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)
    q, k = rng.normal(size=(B, T, H)), rng.normal(size=(B, S, H))
    mask = np.arange(S)[None, :] < LENGTHS[:, None]
    return attn, q, k, mask, rng


def reference_attention(attn, q, k, mask):
    """One (b, t) at a time, softmax over the real positions only: the equations of attention.py's docstring."""
    B, T, _ = q.shape
    alpha = np.zeros((B, T, k.shape[1]))
    P = attn.params
    for b in range(B):
        keys = k[b, mask[b]]                                         # (n_real, H)
        for t in range(T):
            if attn.kind == "luong":
                score = keys @ q[b, t]
            elif attn.kind == "luong-general":
                score = keys @ (q[b, t] @ P["W_a"])
            else:
                score = np.tanh(q[b, t] @ P["W_q"] + keys @ P["W_k"]) @ P["v_a"]
            e = np.exp(score - score.max())
            alpha[b, t, mask[b]] = e / e.sum()
    return alpha @ k, alpha


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_forward_matches_reference_and_weights_sum_to_one_over_real_positions(kind):
    attn, q, k, mask, _ = make_attention(kind, seed=1)
    ctx, alpha = attn.forward(q, k, mask)
    ctx_ref, alpha_ref = reference_attention(attn, q, k, mask)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=0, atol=1e-14, err_msg="alpha")
    np.testing.assert_allclose(ctx, ctx_ref, rtol=0, atol=1e-13, err_msg="ctx")
    np.testing.assert_allclose(alpha.sum(axis=2), 1.0, rtol=0, atol=1e-14)
    assert np.all(alpha[~np.broadcast_to(mask[:, None, :], alpha.shape)] == 0.0), "padding must get exactly 0"


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_padded_keys_neither_affect_the_output_nor_receive_gradient(kind):
    attn, q, k, mask, rng = make_attention(kind, seed=2)
    dctx = rng.normal(size=q.shape)
    ctx, alpha = attn.forward(q, k, mask)
    _, dk = attn.backward(dctx)
    assert np.all(dk[~mask] == 0.0), "dk on padded key positions must be exactly 0"
    assert np.all(dk[mask] != 0.0)
    k2 = k.copy()
    k2[~mask] = rng.normal(size=k2[~mask].shape) * 100                # anything may sit in the padding
    ctx2, alpha2 = attn.forward(q, k2, mask)
    np.testing.assert_array_equal(alpha2, alpha)
    np.testing.assert_allclose(ctx2, ctx, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_backward_matches_finite_differences(kind):
    attn, q, k, mask, rng = make_attention(kind, seed=3)
    dctx = rng.normal(size=q.shape)                                  # random upstream gradient

    def loss():
        return float(np.sum(dctx * attn.forward(q, k, mask)[0]))

    attn.zero_grad()
    attn.forward(q, k, mask)
    dq, dk = attn.backward(dctx)
    arrays = {"q": q, "k": k, **attn.params}
    analytic = {"q": dq, "k": dk, **{n: g.copy() for n, g in attn.grads.items()}}
    errors = check_gradients(loss, arrays, analytic, eps=1e-6)
    bad = {name: f"{err:.2e}" for name, err in errors.items() if not err <= 1e-8}
    assert not bad, f"relative error above 1e-8 for: {bad}"
    assert set(errors) == {"q", "k"} | set(attn.params)


# ---------------------------------------------------------------------------------------------------
# the whole model's loss through attention: every attention type, every peephole variant, both architectures
ATTN_CONFIGS = [("luong", "full", 2, True, {}), ("luong-general", "diagonal", 2, True, {}),
                ("bahdanau", "none", 2, True, {}),
                ("bahdanau", "full", 1, False, dict(reverse_source=True)),
                ("luong", "diagonal", 1, False, dict(peeky=True)),
                ("luong-general", "none", 1, False, dict(reverse_source=True, peeky=True))]


@pytest.mark.parametrize("attention,peephole,layers,bidirectional,kwargs", ATTN_CONFIGS,
                         ids=[f"{a}-{p}-{n}L{'-bi' if bi else ''}" + "".join(f"-{k}" for k in kw)
                              for a, p, n, bi, kw in ATTN_CONFIGS])
def test_loss_grads_through_attention_match_finite_differences(attention, peephole, layers, bidirectional,
                                                                kwargs):
    model = make_model(peephole, layers, bidirectional, attention=attention, seed=21,
                       size=2 if bidirectional else 3, **kwargs)
    if not kwargs:
        assert not model.peeky and not model.reverse_source, "documented defaults with attention"
    assert_loss_grads_match_finite_differences(model, SRC, TGT)


# ---------------------------------------------------------------------------------------------------
# the attention weights returned by translate
def assert_valid_attention(outputs, weights, src):
    lengths = lengths_of(src)
    assert len(weights) == len(outputs) == src.shape[0]
    for b, (out, w) in enumerate(zip(outputs, weights)):
        assert w.shape == (len(out) + 1, src.shape[1]), f"sentence {b}: one row per output token and EOS"
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-12, err_msg=f"sentence {b}")
        assert np.all(w[:, lengths[b]:] == 0.0), f"sentence {b}: weight on padding"


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_translate_returns_attention_in_source_order(attention, beam_size):
    """reverse_source=True must report weights over the source's own positions: the model reading the
    source reversed equals a model with the same weights reading a hand-reversed source, with its
    weights' columns reversed within each length."""
    src = np.concatenate([SRC, np.full((3, 1), PAD)], axis=1)        # a padded column in every row
    reversed_model = make_model("full", 1, False, attention=attention, seed=31, reverse_source=True)
    plain = make_model("full", 1, False, attention=attention, seed=32, reverse_source=False)
    copy_weights(plain, reversed_model)
    src_rev = reverse_within_lengths(src, lengths_of(src))
    out, weights = reversed_model.translate(src, max_len=6, beam_size=beam_size, return_attention=True)
    out2, weights2 = plain.translate(src_rev, max_len=6, beam_size=beam_size, return_attention=True)
    assert out == out2
    assert_valid_attention(out, weights, src)
    assert_valid_attention(out2, weights2, src_rev)
    lengths = lengths_of(src)
    for b in range(len(out)):
        mapped = reverse_within_lengths(weights2[b], np.full(len(weights2[b]), lengths[b]))
        np.testing.assert_allclose(weights[b], mapped, rtol=0, atol=1e-12, err_msg=f"sentence {b}")
        assert not np.allclose(weights[b], weights2[b]), "the check needs weights that are not symmetric"


def test_translate_attention_rows_equal_the_decoding_steps_weights():
    """Row j of the returned weights is the α the decoder computed when it emitted token j (greedy)."""
    model = make_model("diagonal", 2, True, attention="luong-general", seed=41)
    out, weights = model.translate(SRC, max_len=5, return_attention=True)
    keys, h, c, mask, summary = model.encode(SRC)
    for b, o in enumerate(out):
        hb, cb, prev = h[:, b:b + 1], c[:, b:b + 1], BOS
        for j, y in enumerate(o + [None]):
            _, (hb, cb), alpha = model.decoder.forward(np.array([[prev]]), hb, cb, summary[b:b + 1],
                                                       keys[b:b + 1], mask[b:b + 1])
            np.testing.assert_allclose(weights[b][j], alpha[0, 0], rtol=0, atol=1e-12)
            prev = y


def test_translate_without_attention_returns_none_for_weights():
    model = make_model(seed=5)
    out, weights = model.translate(SRC, max_len=4, return_attention=True)
    assert weights is None and out == model.translate(SRC, max_len=4)


@pytest.mark.parametrize("kind", [None, "dot", "Luong", ""])
def test_attention_kind_must_be_one_of_the_three_scores(kind):
    """Attention has no "no attention" kind (that is Seq2Seq's attention=None): None is refused when built,
    not later as a KeyError in forward."""
    with pytest.raises(ValueError, match=r"kind must be one of \('luong', 'luong-general', 'bahdanau'\), got"):
        Attention(kind, 8)


@pytest.mark.parametrize("call, exc, words", [
    (lambda a, q, k, m: a.forward(q[0], k, m), ValueError, ["q must have shape (B, T, 4), got (3, 4)"]),
    (lambda a, q, k, m: a.forward(q[..., :3], k, m), ValueError, ["q must have shape (B, T, 4), got (2, 3, 3)"]),
    (lambda a, q, k, m: a.forward(q, k[:1], m[:1]), ValueError, ["k must have the batch size of q (2)"]),
    (lambda a, q, k, m: a.forward(q, k, m[:, :2]), ValueError, ["mask must have shape (2, 5) (B, S) like k"]),
    (lambda a, q, k, m: a.forward(q, k, m.astype(int)), TypeError, ["mask must be a boolean array"]),
    (lambda a, q, k, m: a.forward(q.astype(int), k, m), TypeError, ["q must be a floating array"]),
    (lambda a, q, k, m: a.forward(q, k, np.zeros_like(m)), ValueError, ["mask must have at least one True"]),
    (lambda a, q, k, m: (a.forward(q, k, m), a.backward(q[:, :1]))[1], ValueError,
     ["dctx must have shape (2, 3, 4) (B, T, H)"]),
])
@pytest.mark.parametrize("kind", ["luong", "luong-general", "bahdanau"])
def test_bad_attention_input_is_an_error_naming_the_argument(kind, call, exc, words):
    rng = np.random.default_rng(0)
    attn = Attention(kind, 4, dtype=np.float64)
    q, k = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    mask = np.ones((2, 5), bool)
    with pytest.raises(exc) as info:
        call(attn, q, k, mask)
    for word in words:
        assert word in str(info.value), str(info.value)
