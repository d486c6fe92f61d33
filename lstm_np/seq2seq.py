"""Encoder, Decoder and Seq2Seq: sequence-to-sequence learning built from lstm_np's own cells.

    encoder:  src ids (B, S) -> embedding -> LSTM stack (optionally bidirectional, optionally reading the
              source reversed, Sutskever et al. 2014) -> outputs k_s (B, S, Hd), final states (L, B, Hd)
    decoder:  BOS + tgt[:-1] -> embedding [⊕ summary] -> LSTM stack started from the encoder's final states
              -> [attention over k_s] -> linear -> logits (T, B, V)
    loss:     mean cross-entropy over the real (non-PAD) target tokens (teacher forcing)

Hd = num_directions * hidden_size: a bidirectional encoder's forward and backward final states are
concatenated into the decoder's initial state, layer by layer.

"Peeky" decoder (Saito, Deep Learning from Scratch 2): the encoder's summary (the top layer's final h) is
concatenated to the decoder's input at every step and, without attention, to the output layer's input, so
the decoder never has to carry it through its own state. With attention the output layer reads Luong's
attentional hidden state h~_t = tanh(W_c [ctx_t ; h_t]) instead; peeky then only widens the decoder's input.

Dropout, in training mode only, inverted (kept units scaled by 1/(1-p), so eval mode needs no rescaling):
`dropout` between stacked LSTM layers (lstm.py), `embed_dropout` on both embeddings' outputs (each token's
vector, unit by unit) and `output_dropout` on the output layer's input. The masks come from the encoder's and
the decoder's LSTM generators, which checkpoints save, so a resumed run draws the same masks.
"""
import contextlib

import numpy as np

from .attention import Attention, check_attention
from .checks import check_dtype, check_int, check_number, check_size
from .data import PAD, UNK, lengths_of, reverse_within_lengths, teacher_forcing_input
from .decoding import attention_weights, beam_search, greedy
from .functional import dropout_mask
from .layers import Embedding, Linear
from .losses import check_smoothing, masked_cross_entropy
from .lstm import LSTM

OUTPUT_BIAS_INITS = ("prior", "uniform")   # the output bias's start: Seq2Seq.init_output_bias, or Linear's own


def combine_lr_scale(named_parameters, scale):
    """An optimizer's lr_scale giving the attentional layer h~_t = tanh(W_c [ctx_t ; h_t]) (decoder.combine.*)
    the multiplier `scale`: {name: scale}, {} without attention.

    Why one might: Adam moves every weight by about lr per step whatever its gradient's size, and W_c's 2·Hd
    inputs of similar sign add those moves up, so a few steps that all push one way saturate the tanh, which
    then passes almost no gradient to the attention, the decoder and the encoder below it. With the output
    bias at random, the first steps push that way (on word-level Tatoeba at lr 1e-2, 99% of h~'s units at
    |h~| > 0.99 by step 100); a tenth of the rate kept them unsaturated but scored lower on DLfS2 addition at
    30 s (validation 98.8% against 99.8%). Starting the output bias at the targets' frequencies
    (Seq2Seq.init_output_bias, the default) removes the push itself, so the default stays 1.0."""
    return {name: scale for name, _, _ in named_parameters if name.startswith("decoder.combine.")}


def check_ids(name, ids, vocab_size):
    """`ids` as a 2-D int64 array with values in [0, vocab_size), right-padded with PAD; else a clear error."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of token ids, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (batch, length), got shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise ValueError(f"{name} token ids must lie in [0, {vocab_size}), got values in [{arr.min()}, {arr.max()}]")
    real = arr != PAD
    if (real[:, 1:] & ~real[:, :-1]).any():
        raise ValueError(f"{name} must be right-padded: a PAD ({PAD}) token is followed by a real token")
    return arr.astype(np.int64, copy=False)


class Encoder:
    """src ids (B, S) -> keys (B, S, Hd), h0, c0 (L, B, Hd) for the decoder, mask (B, S)."""

    def __init__(self, vocab_size, embed_size, hidden_size, num_layers, peephole, bidirectional, dropout,
                 reverse_source, dtype, seeds, peephole_init="uniform", embed_dropout=0.0):
        self.embed = Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[0], padding_idx=PAD)
        self.lstm = LSTM(embed_size, hidden_size, num_layers, peephole, bidirectional, dropout, dtype, seeds[1],
                         peephole_init)
        self.reverse_source = reverse_source
        self.embed_dropout = embed_dropout
        self._embed_mask = None

    def named_parameters(self):
        return ([("encoder.embed." + n, v, g) for n, v, g in self.embed.named_parameters()]
                + [("encoder.lstm." + n, v, g) for n, v, g in self.lstm.named_parameters()])

    def forward(self, src):
        lengths = lengths_of(src)                                           # (B,)
        ids = reverse_within_lengths(src, lengths) if self.reverse_source else src
        x = self.embed.forward(ids.T)                                       # (S, B, E) time-major
        self._embed_mask = None
        if self.lstm.training and self.embed_dropout > 0:
            self._embed_mask = dropout_mask(self.lstm.rng, x.shape, self.embed_dropout, x.dtype, self.lstm.batch_rows)
            x = x * self._embed_mask                                        # x ⊙ m, m ∈ {0, 1/(1-p)}  (S, B, E)
        y, (h_n, c_n) = self.lstm.forward(x, lengths=lengths)               # (S, B, Hd), (L*nd, B, H)
        L, nd, H = self.lstm.num_layers, self.lstm.num_directions, self.lstm.hidden_size
        B = src.shape[0]

        def bridge(s):  # (L*nd, B, H) -> (L, B, nd*H): a layer's directions side by side
            return s.reshape(L, nd, B, H).transpose(0, 2, 1, 3).reshape(L, B, nd * H)

        mask = np.arange(src.shape[1])[None, :] < lengths[:, None]          # (B, S) real positions
        self._shape = (L, nd, B, H, src.shape[1])
        return y.transpose(1, 0, 2), bridge(h_n), bridge(c_n), mask

    def backward(self, dkeys, dh0, dc0):
        """dkeys (B, S, Hd) or None, dh0, dc0 (L, B, Hd): accumulates the encoder's gradients."""
        L, nd, B, H, S = self._shape

        def unbridge(d):  # (L, B, nd*H) -> (L*nd, B, H)
            return d.reshape(L, B, nd, H).transpose(0, 2, 1, 3).reshape(L * nd, B, H)

        dy = np.zeros((S, B, nd * H), self.lstm.dtype) if dkeys is None else dkeys.transpose(1, 0, 2)
        dx, _ = self.lstm.backward(dy, unbridge(dh0), unbridge(dc0))
        self.embed.backward(dx if self._embed_mask is None else dx * self._embed_mask)   # ∂L/∂x = ∂L/∂(x ⊙ m) ⊙ m


class Decoder:
    """Teacher-forced or step-by-step decoding: ids (T, B) + states -> logits (T, B, V), new states."""

    def __init__(self, vocab_size, embed_size, hidden_size, num_layers, peephole, dropout, attention, peeky,
                 dtype, seeds, peephole_init="uniform", embed_dropout=0.0, output_dropout=0.0):
        self.embed = Embedding(vocab_size, embed_size, dtype=dtype, seed=seeds[0], padding_idx=PAD)
        self.peeky = peeky
        self.embed_dropout, self.output_dropout = embed_dropout, output_dropout
        self._embed_mask = self._out_mask = None
        lstm_in = embed_size + (hidden_size if peeky else 0)
        self.lstm = LSTM(lstm_in, hidden_size, num_layers, peephole, False, dropout, dtype, seeds[1], peephole_init)
        self.attn = None
        if attention is not None:
            self.attn = Attention(attention, hidden_size, dtype, seeds[2])
            self.combine = Linear(2 * hidden_size, hidden_size, dtype=dtype, seed=seeds[3])
            out_in = hidden_size
        else:
            out_in = hidden_size * (2 if peeky else 1)
        self.out = Linear(out_in, vocab_size, dtype=dtype, seed=seeds[4])

    def modules(self):
        mods = [("embed", self.embed), ("lstm", self.lstm), ("out", self.out)]
        if self.attn is not None:
            mods += [("attn", self.attn), ("combine", self.combine)]
        return mods

    def named_parameters(self):
        return [(f"decoder.{m}.{n}", v, g) for m, mod in self.modules() for n, v, g in mod.named_parameters()]

    def forward(self, ids, h0, c0, summary, keys, mask):
        """ids (T, B), h0/c0 (L, B, Hd), summary (B, Hd), keys (B, S, Hd), mask (B, S)
        -> logits (T, B, V), (h_n, c_n), attention weights (B, T, S) or None."""
        x = self.embed.forward(ids)                                         # (T, B, E)
        training = self.lstm.training
        self._embed_mask = self._out_mask = None
        if training and self.embed_dropout > 0:
            self._embed_mask = dropout_mask(self.lstm.rng, x.shape, self.embed_dropout, x.dtype, self.lstm.batch_rows)
            x = x * self._embed_mask                                        # x ⊙ m                    (T, B, E)
        # peeky: the LSTM reads [x_t ; summary] at every step, the summary's projection computed once (lstm.py)
        y, (h_n, c_n) = self.lstm.forward(x, h0, c0, static=summary if self.peeky else None)  # (T, B, Hd)
        alpha = None
        if self.attn is not None:
            ctx, alpha = self.attn.forward(y.transpose(1, 0, 2), keys, mask)                 # (B, T, Hd)
            h_att = np.tanh(self.combine.forward(np.concatenate([ctx.transpose(1, 0, 2), y], axis=2)))
            self._h_att = h_att                                             # h~_t = tanh(W_c [ctx_t ; h_t])
            out_in = h_att
        elif self.peeky:
            out_in = np.concatenate([y, np.broadcast_to(summary, y.shape)], axis=2)         # [h_t ; summary]
        else:
            out_in = y
        if training and self.output_dropout > 0:
            self._out_mask = dropout_mask(self.lstm.rng, out_in.shape, self.output_dropout, out_in.dtype,
                                          self.lstm.batch_rows)
            out_in = out_in * self._out_mask                                # what the output layer reads, ⊙ m
        return self.out.forward(out_in), (h_n, c_n), alpha                 # (T, B, V)

    def backward(self, dlogits):
        """-> dh0, dc0 (L, B, Hd), dsummary (B, Hd) or None, dkeys (B, S, Hd) or None."""
        Hd = self.lstm.hidden_size
        d_out_in = self.out.backward(dlogits)
        if self._out_mask is not None:
            d_out_in = d_out_in * self._out_mask                            # ∂L/∂out_in = ∂L/∂(out_in ⊙ m) ⊙ m
        dsummary, dkeys = None, None
        if self.attn is not None:
            d_pre = d_out_in * (1 - self._h_att * self._h_att)              # through tanh
            d_cat = self.combine.backward(d_pre)                            # (T, B, 2Hd)
            dq, dkeys = self.attn.backward(d_cat[:, :, :Hd].transpose(1, 0, 2))
            dy = d_cat[:, :, Hd:] + dq.transpose(1, 0, 2)
        elif self.peeky:
            dy, dsummary = d_out_in[:, :, :Hd], d_out_in[:, :, Hd:].sum(axis=0)
        else:
            dy = d_out_in
        dx_embed, (dh0, dc0) = self.lstm.backward(dy)                       # (T, B, E)
        if self.peeky:
            ds = self.lstm.d_static                                         # ∂L/∂summary through every step
            dsummary = ds if dsummary is None else dsummary + ds
        self.embed.backward(dx_embed if self._embed_mask is None else dx_embed * self._embed_mask)
        return dh0, dc0, dsummary, dkeys


class Seq2Seq:
    """Encoder/decoder translation model (docs/design.md §2).

    loss(src (B, S), tgt (B, T)) -> float   mean cross-entropy of tgt given src (teacher forcing; optionally
                                            label-smoothed: losses.masked_cross_entropy)
    backward()                              gradients of the last loss, accumulated into named_parameters()
    translate(src, max_len, beam_size)      -> list of token-id lists (EOS stripped)

    peeky=None means "on without attention, off with it"; reverse_source=None means "on for a
    unidirectional encoder without attention" (a bidirectional encoder already reads both ways, and
    attention reaches every source position directly). peephole_init as in LSTMCell ("uniform" or "zero").
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, embed_size=64, hidden_size=128, num_layers=1,
                 peephole="full", bidirectional=False, dropout=0.0, attention=None, dtype=np.float32, seed=0,
                 peeky=None, reverse_source=None, peephole_init="uniform", embed_dropout=0.0, output_dropout=0.0):
        check_int("src_vocab_size", src_vocab_size, low=UNK + 2)   # the special tokens take ids 0..UNK
        check_int("tgt_vocab_size", tgt_vocab_size, low=UNK + 2)
        check_size("embed_size", embed_size)   # checked here: the Embedding layers would call it embedding_dim
        embed_dropout = float(check_number("embed_dropout", embed_dropout, low=0, high=1, high_inclusive=False))
        output_dropout = float(check_number("output_dropout", output_dropout, low=0, high=1, high_inclusive=False))
        self.attention = check_attention(attention)
        self.peeky = (attention is None) if peeky is None else bool(peeky)
        self.reverse_source = (not bidirectional and attention is None) if reverse_source is None \
            else bool(reverse_source)
        self.config = dict(src_vocab_size=int(src_vocab_size), tgt_vocab_size=int(tgt_vocab_size),
                           embed_size=embed_size, hidden_size=hidden_size, num_layers=num_layers,
                           peephole=peephole, bidirectional=bool(bidirectional), dropout=dropout,
                           attention=attention, dtype=check_dtype(dtype).name, seed=seed, peeky=self.peeky,
                           reverse_source=self.reverse_source, peephole_init=peephole_init,
                           embed_dropout=embed_dropout, output_dropout=output_dropout)
        try:
            seed_seq = np.random.SeedSequence(seed)
        except (TypeError, ValueError):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}") from None
        seeds = [int(s.generate_state(1)[0]) for s in seed_seq.spawn(7)]  # one per module
        self.encoder = Encoder(src_vocab_size, embed_size, hidden_size, num_layers, peephole, bidirectional,
                               dropout, self.reverse_source, dtype, seeds[:2], peephole_init, embed_dropout)
        Hd = hidden_size * self.encoder.lstm.num_directions
        self.decoder = Decoder(tgt_vocab_size, embed_size, Hd, num_layers, peephole, dropout, attention,
                               self.peeky, dtype, seeds[2:], peephole_init, embed_dropout, output_dropout)
        self.dtype = self.encoder.lstm.dtype
        self._cache = None

    def named_parameters(self):
        return self.encoder.named_parameters() + self.decoder.named_parameters()

    def init_output_bias(self, counts):
        """Start the output layer's bias at the log-frequencies of the target tokens (`counts[v]`: how often
        token v is a training target, EOS included), centred:

            p_v = (n_v + 1) / Σ_u (n_u + 1)          (add-one: tokens never seen as targets keep some mass)
            b_v = log p_v - mean_u log p_u

        so that the untrained model already predicts each token at its frequency (softmax(b) = p).

        Why: with the bias at random, the first steps' gradients all point one way, towards the targets'
        frequencies, and Adam, which moves every weight by about lr per step whatever its gradient's size,
        pushes the decoder's units to ±1 along them. With attention that saturates h~ = tanh(W_c [ctx ; h])
        (2·Hd inputs adding up their weights' moves), and a saturated tanh passes almost no gradient back:
        on word-level Tatoeba at lr 1e-2, 99% of h~'s units sat at |h~| > 0.99 by step 100 and the loss was
        3.8 at step 400; from the prior, 2% and 1.0 (docs/results.md)."""
        counts = np.asarray(counts)
        bias = self.decoder.out.b
        if counts.shape != bias.shape or counts.dtype.kind not in "iu" or (counts < 0).any():
            raise ValueError(f"counts must hold a non-negative integer count for each of the "
                             f"{bias.size} target tokens, got shape {counts.shape} dtype {counts.dtype}")
        log_p = np.log((counts + 1.0) / np.sum(counts + 1.0))
        bias[...] = log_p - log_p.mean()

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g.fill(0)

    def train(self, mode=True):
        self.encoder.lstm.train(mode)
        self.decoder.lstm.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def training(self):
        return self.encoder.lstm.training

    def encode(self, src):
        """src (B, S) ids -> keys (B, S, Hd), h0, c0 (L, B, Hd), mask (B, S), summary (B, Hd)."""
        src = check_ids("src", src, self.config["src_vocab_size"])
        keys, h0, c0, mask = self.encoder.forward(src)
        return keys, h0, c0, mask, h0[-1]

    def loss(self, src, tgt, rows=None, label_smoothing=0.0):
        """Mean cross-entropy over tgt's real tokens; the decoder reads BOS + tgt[:, :-1] (teacher forcing).

        label_smoothing ε: the targets are (1 - ε) the true token + ε spread evenly over the vocabulary
        (losses.masked_cross_entropy); 0 is the plain cross-entropy.

        rows: a slice of the batch (a data-parallel worker's share, parallel.py): only those rows are computed,
        their cross-entropy summed over the whole batch's real tokens, with the dropout masks of those rows of
        the whole batch; the shares' losses and gradients then add up to the whole batch's."""
        # The previous loss is dead from here: a call that fails validation leaves nothing behind that
        # backward() could silently differentiate instead.
        self._cache = None
        check_smoothing("label_smoothing", label_smoothing)
        tgt = check_ids("tgt", tgt, self.config["tgt_vocab_size"])
        src = check_ids("src", src, self.config["src_vocab_size"])
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size, got {src.shape[0]} and {tgt.shape[0]}")
        if not (tgt != PAD).any(axis=1).all():
            raise ValueError("tgt has a row with no real token: every target must end with EOS")
        tokens, batch_rows = None, None
        if rows is not None:
            if not isinstance(rows, slice):
                raise TypeError(f"rows must be a slice of the batch, got {type(rows).__name__}")
            lo, hi, step = rows.indices(len(src))
            if step != 1 or hi <= lo:
                raise ValueError(f"rows must be a non-empty slice of consecutive rows of the batch, got {rows}")
            tokens, batch_rows = int((tgt != PAD).sum()), (lo, hi, len(src))     # the whole batch's
            src, tgt = src[lo:hi], tgt[lo:hi]
        self.encoder.lstm.batch_rows = self.decoder.lstm.batch_rows = batch_rows
        keys, h0, c0, mask, summary = self.encode(src)
        dec_in = teacher_forcing_input(tgt)                                               # BOS, y_1 .. y_{T-1}
        logits, _, _ = self.decoder.forward(dec_in.T, h0, c0, summary, keys, mask)       # (T, B, V)
        loss, dlogits = masked_cross_entropy(logits, tgt.T, tgt.T != PAD, count=tokens, smoothing=label_smoothing)
        self._cache = dlogits
        return loss

    def backward(self):
        """Gradients of the last `loss(...)`, accumulated (+=) into every parameter's grad."""
        if self._cache is None:
            raise ValueError("backward() needs a completed loss() to differentiate (there was none since the "
                             "last backward() or translate(), or the last loss() raised)")
        dh0, dc0, dsummary, dkeys = self.decoder.backward(self._cache)
        if dsummary is not None:
            dh0[-1] += dsummary                                             # summary is h0's top layer
        self.encoder.backward(dkeys, dh0, dc0)
        self._cache = None

    def translate(self, src, max_len=50, beam_size=1, return_attention=False, length_penalty=1.0):
        """Decode src (B, S) ids; -> list of B token-id lists with EOS stripped (and, with
        return_attention, a list of (len(out) + 1, S) attention arrays over the source's positions, the
        last row for the step that emits EOS; None without attention)."""
        beam_size, max_len = check_size("beam_size", beam_size), check_size("max_len", max_len)
        check_number("length_penalty", length_penalty, low=0)
        with self._decoding():
            if beam_size == 1:
                out, _ = greedy(self, src, max_len, length_penalty)
            else:
                out = beam_search(self, src, max_len, beam_size, length_penalty)
            attn = attention_weights(self, src, out) if return_attention and self.attention else None
        return (out, attn) if return_attention else out

    def trace(self, src, outputs):
        """The encoder's and decoder's per-step LSTM values (gates i, f, o, c~, states c, h) and the attention
        for src (B, S) and its decoded `outputs` (e.g. from `translate`): a list of B dicts, see
        `decoding.trace`. The model runs once more in eval mode, the decoder teacher-forced on `outputs`."""
        from .decoding import trace
        with self._decoding():
            return trace(self, src, outputs)

    @contextlib.contextmanager
    def _decoding(self):
        """Eval mode for the block, then the mode as it was; decoding reuses the modules' caches, so the
        last loss can no longer be differentiated."""
        was_training = self.training
        self.eval()
        self._cache = None
        try:
            yield
        finally:
            self.train(was_training)
