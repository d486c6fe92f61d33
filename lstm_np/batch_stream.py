"""The training batches of a run, epoch after epoch, in an order a resumed run replays exactly.

Each epoch's order (`data.batches`: similar lengths grouped, batches shuffled) is drawn from the data RNG, and
the RNG's state at the epoch's start is kept in the training state (`epoch_rng`) with the epoch and the
position in it: a resumed run redraws the same order from that state and continues at the same batch.
"""
import math

from .data import batches, pad_batch


class BatchStream:
    """Padded (src, tgt) id batches of the encoded training pairs `src`, `tgt` (lists of id lists).

    state: the run's TrainState, whose `epoch`, `pos` and `epoch_rng` this stream advances; rng: the data RNG."""

    def __init__(self, src, tgt, batch_size, rng, state):
        self.src, self.tgt, self.batch_size, self.rng, self.state = src, tgt, batch_size, rng, state
        self.lengths = [len(x) for x in src]                       # what batching groups by
        self.batches_per_epoch = math.ceil(len(src) / batch_size)
        self.order = None                                          # this epoch's batches (lists of indices)

    def next(self):
        """The next batch: (src, tgt) padded id arrays, (B, S) and (B, T)."""
        s = self.state
        if self.order is None:                                     # the first batch of this process
            if s.epoch_rng is None:
                s.epoch_rng = self.rng.bit_generator.state
            else:
                self.rng.bit_generator.state = s.epoch_rng         # resumed: redraw this epoch's order
            self.order = batches(self.lengths, self.batch_size, self.rng)
        if s.pos >= len(self.order):
            s.epoch, s.pos = s.epoch + 1, 0
            s.epoch_rng = self.rng.bit_generator.state
            self.order = batches(self.lengths, self.batch_size, self.rng)
        idx = self.order[s.pos]
        s.pos += 1
        return pad_batch([self.src[i] for i in idx]), pad_batch([self.tgt[i] for i in idx])

    def epochs_done(self):
        """Passes over the data completed, counting the current one once its last batch is taken."""
        return self.state.epoch + (self.state.pos >= self.batches_per_epoch)
