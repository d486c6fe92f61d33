"""What the benchmark scripts share: the repository's paths, the results-JSON flag, one `lstm-np train` run read
back as its metrics, and the PyTorch seq2seq yardstick with its training loop (when torch imports; torch is a
yardstick here, never a dependency of lstm_np).

    train_lstm_np(flags, workdir, name)     `lstm-np train FLAGS --out .. --metrics-out ..` in a subprocess
    load_torch()                            imports torch (None without it) and defines TorchSeq2Seq:
    TorchSeq2Seq(...)                       an ordinary nn.LSTM encoder/decoder (options below)
    torch_data(flags, seed)                 the splits, vocabularies and batching `lstm-np train` uses
    train_torch(data, seconds, ...)         TorchSeq2Seq trained for a wall-clock budget
    YARDSTICK                               the settings bench_time_to_accuracy.py trains it with
"""
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "data")
RESULTS = os.path.join(ROOT, "benchmarks", "results")

from lstm_np.data import BOS, EOS, PAD, batches, pad_batch  # noqa: E402

torch = None           # the torch module once load_torch() has imported it
TorchSeq2Seq = None    # and the yardstick's class, defined then


def shown(flags):
    """Flags as a user types them from the repository's root (data/... instead of the absolute path)."""
    return " ".join(str(f).replace(DATA, "data") for f in flags)


def load_average():
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_seconds(who=resource.RUSAGE_SELF):
    """User + system CPU seconds of this process (or of its reaped children: resource.RUSAGE_CHILDREN)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def add_json_flag(parser, name):
    """--json OUT, default benchmarks/results/NAME.json."""
    default = os.path.join(RESULTS, f"{name}.json")
    parser.add_argument("--json", default=default, help=f"where to write the JSON results [{os.path.relpath(default, ROOT)}]")


def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


# ---------------------------------------------------------------------------------------------------------
# lstm_np, exactly as a user runs it
def start_lstm_np(flags, workdir, name):
    """Start `python -m lstm_np train FLAGS --out WORKDIR/NAME --metrics-out WORKDIR/NAME.json` (cwd `workdir`);
    -> the running process. `finish_lstm_np` waits for it and reads its metrics."""
    cmd = [sys.executable, "-m", "lstm_np", "train", *flags, "--out", os.path.join(workdir, name),
           "--metrics-out", os.path.join(workdir, name + ".json")]
    children_cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir)
    proc.started, proc.children_cpu = time.perf_counter(), children_cpu
    proc.run_files = os.path.join(workdir, name)
    return proc


def finish_lstm_np(proc):
    """-> the run's --metrics-out dict plus `out` (its run folder), `wall_seconds` and `cpu_seconds` (the CPU time
    the whole run got, start to exit: another job's load shows as cpu_seconds well below wall_seconds), or
    {"failed": the last line of its stderr}."""
    _, err = proc.communicate()
    wall = time.perf_counter() - proc.started
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - proc.children_cpu   # this run alone: one child at a time
    if proc.returncode != 0:
        return {"failed": (err.strip().splitlines() or ["?"])[-1]}
    with open(proc.run_files + ".json") as f:
        metrics = json.load(f)
    return {**metrics, "out": proc.run_files, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}


def train_lstm_np(flags, workdir, name):
    """One `lstm-np train` run to its end: `finish_lstm_np(start_lstm_np(...))`."""
    return finish_lstm_np(start_lstm_np(flags, workdir, name))


# ---------------------------------------------------------------------------------------------------------
# the PyTorch yardstick
# The settings bench_time_to_accuracy.py trains the yardstick with: chosen by tune_yardstick.py on validation
# exact match (pairs held out of the DLfS2 addition and dates training files, 30 CPU seconds per run, 1 thread),
# in three stages: structure, then lr x batch, then schedule x hidden size. docs/studies/yardstick/ has the scores.
YARDSTICK = {"attention": "luong", "peeky": True, "reverse_source": True, "hidden_size": 128,
             "lr": 1e-2, "batch_size": 128, "schedule": "cosine"}


def load_torch():
    """Import torch and define TorchSeq2Seq on the first call; -> the torch module, or None when torch is not
    installed. Lazy, so the scripts that do not use it never load torch (bench_memory.py configures torch's
    logging before it loads)."""
    global torch, TorchSeq2Seq
    if torch is None:
        try:
            import torch as module
        except ImportError:
            return None
        torch, TorchSeq2Seq = module, torch_seq2seq_class(module)
    return torch


def torch_seq2seq_class(torch):
    """The yardstick's nn.Module class, defined once torch is imported (load_torch)."""
    nn, F = torch.nn, torch.nn.functional
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class TorchSeq2Seq(nn.Module):
        """What a user would write with torch, with the architecture choices lstm_np's Seq2Seq has:

            encoder   nn.Embedding(V_src, E) -> nn.LSTM(E, H) over the source, read reversed within its length
                      if reverse_source; packed only when the batch has padding; with bidirectional, both
                      directions, their final states side by side ([fwd ; bwd], as lstm_np's bridge) for a
                      decoder of Hd = 2H units (H otherwise)
            decoder   nn.Embedding(V_tgt, E) [⊕ the encoder's final h if peeky] -> nn.LSTM started from the
                      encoder's final (h, c) -> with attention="luong": dot attention over the encoder outputs,
                      tanh(W_c [ctx ; h]) -> nn.Linear(H, V_tgt); without: nn.Linear over h [⊕ summary if peeky]
            dropout   embed_dropout on both embeddings' outputs, output_dropout on the output layer's input (in
                      training mode), as lstm_np's --embed-dropout and --output-dropout
            loss      F.cross_entropy over the real target tokens (teacher forcing), as lstm_np's loss, with
                      label_smoothing as its --label-smoothing
            decoding  batched greedy search to EOS (lstm_np's translate interface, so lstm_np.evaluate scores it)
        """

        def __init__(self, src_vocab, tgt_vocab, embed_size=64, hidden_size=128, attention=None, peeky=False,
                     reverse_source=False, bidirectional=False, embed_dropout=0.0, output_dropout=0.0,
                     label_smoothing=0.0):
            super().__init__()
            self.label_smoothing = label_smoothing
            self.embed_drop, self.out_drop = nn.Dropout(embed_dropout), nn.Dropout(output_dropout)
            if attention not in (None, "luong"):
                raise ValueError(f"attention must be None or 'luong', got {attention!r}")
            self.attention, self.peeky, self.reverse_source = attention, peeky, reverse_source
            self.src_embed = nn.Embedding(src_vocab, embed_size, padding_idx=PAD)
            self.tgt_embed = nn.Embedding(tgt_vocab, embed_size, padding_idx=PAD)
            self.encoder = nn.LSTM(embed_size, hidden_size, bidirectional=bidirectional)
            Hd = hidden_size * (2 if bidirectional else 1)                             # the decoder's units
            self.decoder = nn.LSTM(embed_size + (Hd if peeky else 0), Hd)
            if attention:
                self.combine = nn.Linear(2 * Hd, Hd)
            self.out = nn.Linear(Hd * (2 if peeky and not attention else 1), tgt_vocab)

        def encode(self, src):
            """src (B, S) int64 -> keys (S, B, Hd), (h, c) each (1, B, Hd), mask (B, S) of real positions."""
            real = src != PAD
            lengths = real.sum(1).clamp(min=1)                                         # (B,)
            if self.reverse_source:                                                    # x_{len-1} .. x_0, then PAD
                pos = torch.arange(src.shape[1])[None, :]
                src = src.gather(1, torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos))
            x = self.embed_drop(self.src_embed(src.T))                                 # (S, B, E)
            if bool((~real).any()):
                keys, state = self.encoder(pack_padded_sequence(x, lengths, enforce_sorted=False))
                keys, _ = pad_packed_sequence(keys, total_length=src.shape[1])
            else:
                keys, state = self.encoder(x)
            if self.encoder.bidirectional:                                             # (2, B, H) -> (1, B, 2H)
                state = tuple(torch.cat([s[0], s[1]], -1)[None] for s in state)
            return keys, state, real

        def decode(self, ids, state, keys, mask, summary):
            """ids (T, B) decoder inputs, summary (B, H) the encoder's final h -> logits (T, B, V), new state."""
            x = self.embed_drop(self.tgt_embed(ids))                                   # (T, B, E)
            if self.peeky:
                x = torch.cat([x, summary.expand(x.shape[0], -1, -1)], -1)             # (T, B, E+H)
            y, state = self.decoder(x, state)                                          # (T, B, H)
            if self.attention:
                scores = torch.einsum("tbh,sbh->bts", y, keys).masked_fill(~mask[:, None, :], float("-inf"))
                ctx = torch.einsum("bts,sbh->tbh", scores.softmax(-1), keys)           # (T, B, H)
                y = torch.tanh(self.combine(torch.cat([ctx, y], -1)))                  # h~_t = tanh(W_c [ctx ; h])
            elif self.peeky:
                y = torch.cat([y, summary.expand(y.shape[0], -1, -1)], -1)             # [h_t ; summary]
            return self.out(self.out_drop(y)), state

        def forward(self, src, tgt):
            """src (B, S), tgt (B, T) int64 -> mean cross-entropy over tgt's non-PAD tokens."""
            keys, state, mask = self.encode(src)
            dec_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1).T   # BOS, y_1 .. y_{T-1}
            logits, _ = self.decode(dec_in, state, keys, mask, state[0][-1])
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.T.reshape(-1), ignore_index=PAD,
                                   label_smoothing=self.label_smoothing)

        @torch.no_grad()
        def translate(self, src, max_len=50, beam_size=1):
            """lstm_np's translate interface (greedy only): src (B, S) ids -> lists of ids without EOS."""
            src = torch.as_tensor(np.asarray(src), dtype=torch.long)
            keys, state, mask = self.encode(src)
            summary = state[0][-1]
            ids = torch.full((1, src.shape[0]), BOS, dtype=torch.long)
            out, done = [], torch.zeros(src.shape[0], dtype=torch.bool)
            for _ in range(max_len):
                logits, state = self.decode(ids, state, keys, mask, summary)
                ids = logits.argmax(-1)                                                # (1, B)
                out.append(ids[0])
                done |= ids[0] == EOS
                if bool(done.all()):
                    break
            rows = torch.stack(out, 1).tolist()
            return [row[:row.index(EOS)] if EOS in row else row for row in rows]

    return TorchSeq2Seq


def torch_data(flags, seed=0):
    """The data `lstm-np train FLAGS --seed SEED` trains on (its splits, with the validation pairs it holds out
    of --train, vocabularies and length-grouped batching): an lstm_np Trainer, used for its data only."""
    from lstm_np.config import TrainConfig
    from lstm_np.train import Trainer
    data = {flags[k].lstrip("-").replace("-", "_"): flags[k + 1] for k in range(0, len(flags), 2)}
    return Trainer(TrainConfig(**data, seed=seed, steps=1), log=lambda line: None, handle_signals=False)


def train_torch(data, seconds, lr, batch_size, hidden_size=128, attention=None, peeky=False, reverse_source=False,
                bidirectional=False, schedule="constant", clip=5.0, seed=0, clock=time.perf_counter, embed_size=64,
                embed_dropout=0.0, output_dropout=0.0, average_decay=0.0, label_smoothing=0.0):
    """Train TorchSeq2Seq for `seconds` of `clock` (wall clock; time.process_time gives the CPU time this
    process got, which another job's load does not shrink) on `data` (torch_data's) with Adam at `lr`
    (constant, or `schedule="cosine"`: lr·½(1 + cos(π·elapsed/seconds)), the decay spread over the budget) and
    gradient clipping, in lstm_np's length-grouped batches. -> (model in eval mode, steps, seconds trained).
    average_decay d > 0: also keep the bias-corrected moving average of the weights as `--average-decay` does
    (a ← a + (1 - d)(p - a) after each step, â = a / (1 - d^t)), left in `model.averaged` {name: tensor}.
    label_smoothing ε: the loss's targets are (1 - ε) the true token + ε/V each, as `--label-smoothing`."""
    torch.manual_seed(seed)
    model = TorchSeq2Seq(len(data.src_vocab), len(data.tgt_vocab), embed_size=embed_size, hidden_size=hidden_size,
                         attention=attention, peeky=peeky, reverse_source=reverse_source, bidirectional=bidirectional,
                         embed_dropout=embed_dropout, output_dropout=output_dropout, label_smoothing=label_smoothing)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    lengths = [len(x) for x in data.train_src]                      # what lstm_np's batching groups by
    order, pos, steps = [], 0, 0
    average = {name: torch.zeros_like(p) for name, p in model.named_parameters()} if average_decay else None
    start = clock()
    while (elapsed := clock() - start) < seconds:
        if schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
        if pos >= len(order):
            order, pos = batches(lengths, batch_size, rng), 0
        idx = order[pos]
        pos += 1
        src = torch.as_tensor(pad_batch([data.train_src[i] for i in idx]), dtype=torch.long)
        tgt = torch.as_tensor(pad_batch([data.train_tgt[i] for i in idx]), dtype=torch.long)
        opt.zero_grad()
        model(src, tgt).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        steps += 1
        if average is not None:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    average[name].lerp_(p, 1 - average_decay)              # a ← a + (1 - d)(p - a)
    if average is not None:
        model.averaged = {name: a / (1 - average_decay ** steps) for name, a in average.items()} if steps else {}
    return model.eval(), steps, round(clock() - start, 1)


def max_len_of(data):
    """The output limit `lstm-np train` decodes its test split with."""
    return data.state.max_len
