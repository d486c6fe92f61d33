"""An ordinary PyTorch seq2seq for the time-to-accuracy comparison: what a user would write with torch.

    encoder   nn.Embedding(V_src, 64) -> nn.LSTM(64, H) over the packed source
    decoder   nn.Embedding(V_tgt, 64) -> nn.LSTM(64, H) started from the encoder's final (h, c)
              -> Luong dot attention over the encoder outputs -> tanh(W_c [ctx ; h]) -> nn.Linear(H, V_tgt)
    training  teacher forcing, cross-entropy over the real target tokens, clip_grad_norm_ 5, Adam (constant lr)
    decoding  batched greedy search to EOS

It reads the same splits, vocabularies and length-grouped batches as `lstm-np train` (lstm_np.train's
data loading), so the two models see the same examples; only the model and optimizer code differ. torch is
a yardstick here, never a dependency of lstm_np.
"""
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstm_np.data import BOS, EOS, PAD, batches, pad_batch
from lstm_np.evaluate import evaluate


class TorchSeq2Seq(nn.Module):
    def __init__(self, src_vocab, tgt_vocab, embed_size=64, hidden_size=256):
        super().__init__()
        self.src_embed = nn.Embedding(src_vocab, embed_size, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed_size, padding_idx=PAD)
        self.encoder = nn.LSTM(embed_size, hidden_size)
        self.decoder = nn.LSTM(embed_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, tgt_vocab)

    def encode(self, src):
        """src (B, S) int64 -> keys (S, B, H), (h, c) (1, B, H), mask (B, S) of real positions."""
        lengths = (src != PAD).sum(1).clamp(min=1)
        packed = pack_padded_sequence(self.src_embed(src.T), lengths, enforce_sorted=False)
        keys, state = self.encoder(packed)
        keys, _ = pad_packed_sequence(keys, total_length=src.shape[1])
        return keys, state, src != PAD

    def decode(self, ids, state, keys, mask):
        """ids (T, B) decoder inputs -> logits (T, B, V), new state."""
        y, state = self.decoder(self.tgt_embed(ids), state)                       # (T, B, H)
        scores = torch.einsum("tbh,sbh->bts", y, keys).masked_fill(~mask[:, None, :], float("-inf"))
        ctx = torch.einsum("bts,sbh->tbh", scores.softmax(-1), keys)              # (T, B, H)
        return self.out(torch.tanh(self.combine(torch.cat([ctx, y], -1)))), state

    def loss(self, src, tgt):
        keys, state, mask = self.encode(src)
        dec_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1).T
        logits, _ = self.decode(dec_in, state, keys, mask)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.T.reshape(-1), ignore_index=PAD)

    @torch.no_grad()
    def translate(self, src, max_len=50, beam_size=1):
        """lstm_np's translate interface (greedy only): src (B, S) ids -> lists of ids without EOS."""
        src = torch.as_tensor(np.asarray(src), dtype=torch.long)
        keys, state, mask = self.encode(src)
        ids = torch.full((1, src.shape[0]), BOS, dtype=torch.long)
        out, done = [], torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits, state = self.decode(ids, state, keys, mask)
            ids = logits.argmax(-1)                                               # (1, B)
            out.append(ids[0])
            done |= ids[0] == EOS
            if done.all():
                break
        rows = torch.stack(out, 1).tolist()
        return [row[:row.index(EOS)] if EOS in row else row for row in rows]


def train_torch(trainer, seconds, lr=2e-3, hidden_size=256, batch_size=128, clip=5.0, seed=0):
    """Train the PyTorch model for `seconds` on `trainer`'s data (an lstm_np Trainer, used for its splits,
    vocabularies and batching only), then evaluate it on the test split as `lstm-np train` does.
    -> {"test_exact_match", "steps", "train_seconds"}."""
    torch.manual_seed(seed)
    model = TorchSeq2Seq(len(trainer.src_vocab), len(trainer.tgt_vocab), hidden_size=hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    src_all, tgt_all = trainer.train_src, trainer.train_tgt
    order, pos, steps = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        if pos >= len(order):
            order, pos = batches(trainer.train_lengths, batch_size, rng), 0
        idx = order[pos]
        pos += 1
        src = torch.as_tensor(pad_batch([src_all[i] for i in idx]), dtype=torch.long)
        tgt = torch.as_tensor(pad_batch([tgt_all[i] for i in idx]), dtype=torch.long)
        opt.zero_grad()
        model.loss(src, tgt).backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        steps += 1
    train_seconds = time.perf_counter() - start
    model.eval()
    test = trainer.splits["test"] or trainer.splits["valid"]
    metrics, _ = evaluate(model, trainer.src_vocab, trainer.tgt_vocab, test, trainer.state["max_len"])
    return {"test_exact_match": metrics["exact_match"], "steps": steps, "train_seconds": round(train_seconds, 1)}

