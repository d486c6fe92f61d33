"""Data parallelism: one model trained by N processes (MPI ranks), each computing a share of every batch.

Every rank reads the same data, draws the same batch order from the same seed and holds the same weights.
One optimizer step:

    1. rank r takes rows lo_r:hi_r of the batch (`rows`): Seq2Seq.loss(src, tgt, rows) sums their
       cross-entropy over the whole batch's tokens, with those rows of the whole batch's dropout masks, so
       the ranks' losses and gradients are shares that add up to the one-process batch's
    2. the gradients are summed over the ranks, each rank receiving the sum for its own share of the
       parameters (`sum_and_clip`: one Reduce_scatter of a flat buffer holding every gradient; the flat
       buffer's elements r·P/N .. (r+1)·P/N are rank r's); one Allreduce of two numbers, the loss and the
       shares' Σ g², gives every rank the loss and the global gradient norm, by which each clips its share
    3. each rank takes the Adam step of its share of the parameters (`pieces`), and one Allgatherv hands
       every rank the others' updated shares (`share_weights`): the weights stay identical on every rank,
       and the update's cost is split N ways. The optimizer's moments of a share live on its rank alone,
       until a checkpoint gathers them (`gather_state`)

What is decided once is rank 0's and shared: the time budget (rank 0's clock), a validation point and its
result, the learning rate's horizon, a stop on a signal to any rank. Rank 0 alone writes the run folder
(checkpoints, metrics, the log). The run folder holds no trace of the number of ranks, so a run resumes
with any number of them.

`world()` is this process's World: `Solo` (size 1, no MPI at all) unless the process was started by an MPI
launcher (`mpiexec -n N lstm-np train ...`, or `lstm-np train --workers N`, workers.py), then `MPIWorld`
over mpi4py's COMM_WORLD. mpi4py is an optional extra: pip install "lstm_np[mpi]".
"""
import os
import time

import numpy as np

from .files import atomic_write
from .optim import clip_grad_norm, sum_of_squares

__all__ = ["MPI_HINT", "MPIWorld", "Solo", "launched_by_mpi", "launched_rank", "note_finished", "started_by_workers",
           "world"]

MPI_HINT = 'pip install "lstm_np[mpi]" (mpi4py and MPICH, from the package registry)'
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")   # MPICH's Hydra, Open MPI, PMIx launchers
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
PID_DIR = "LSTM_NP_WORKER_DIR"     # workers.py's folder where each rank notes its pid, and that it finished


def launched_by_mpi():
    """The number of processes an MPI launcher started this one among (1 when none did)."""
    for name in SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def launched_rank():
    """This process's rank as its MPI launcher says, read before MPI starts (0 when none started it)."""
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def started_by_workers():
    """Whether `lstm-np train --workers N` (workers.py) started this process, rather than a user's mpiexec."""
    return launched_by_mpi() > 1 and bool(os.environ.get(PID_DIR))


class Solo:
    """The world of a process training alone: every share is the whole batch, every decision its own."""
    rank, size = 0, 1

    def rows(self, batch):
        """(rows of the batch this rank computes: a slice, or None for all; whether its gradients count)."""
        return None, True

    def sum_and_clip(self, params, loss, max_norm):
        """(the loss, the gradient norm) of the whole batch, the gradients clipped to `max_norm`
        (optim.clip_grad_norm); a process alone holds all of them already."""
        return loss, clip_grad_norm(params, max_norm)

    def pieces(self, params):
        """The parts of the parameters this rank updates ({name: (start, stop)} of the flattened value), None
        for all of them (optim's step(pieces))."""
        return None

    def share_weights(self, params):
        pass

    def gather_state(self, optimizer):
        pass

    def agree_stop(self, over_time, signalled):
        return over_time or signalled

    def from_root(self, value):
        return value

    def barrier(self):
        pass

    def rest_until_all_done(self):
        pass

    def note_finished(self):
        pass


class MPIWorld(Solo):
    """The world of rank `comm.rank` among `comm.size` (mpi4py's communicator)."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._layout = None
        folder = os.environ.get(PID_DIR)
        self._pid_dir = folder if folder and os.path.isdir(folder) else None
        if self._pid_dir:
            atomic_write(os.path.join(self._pid_dir, f"rank{self.rank}.pid"), lambda f: f.write(b"%d" % os.getpid()))

    def rows(self, batch):
        """Rank r's rows r·B/N .. (r+1)·B/N of a batch of B; a batch smaller than N (an epoch's last) is
        computed by every rank, so that all draw the same dropout masks, and counted once, on rank 0."""
        if batch < self.size:
            return None, self.rank == 0
        return slice(self.rank * batch // self.size, (self.rank + 1) * batch // self.size), True

    def _split(self, params):
        """The flat layout of the parameters: parameter i holds elements offsets[i] .. offsets[i] + size of a
        buffer of P, and rank r owns elements bounds[r] .. bounds[r + 1]. Made for the first parameters it
        sees, and again for parameters of other sizes (another model trained in the same process)."""
        key = tuple(value.size for _, value, _ in params)
        if self._layout is None or self._layout[0] != key:
            for name, value, grad in params:           # every rank has the same parameters: all raise alike
                if not (value.flags.c_contiguous and grad.flags.c_contiguous) or value.dtype != params[0][1].dtype:
                    raise ValueError(f"parameter {name!r}: data-parallel training needs C-contiguous parameters "
                                     f"of one dtype ({params[0][1].dtype})")
            offsets = np.concatenate([[0], np.cumsum(key)]).astype(np.int64)
            total = int(offsets[-1])
            bounds = [r * total // self.size for r in range(self.size + 1)]
            counts = [bounds[r + 1] - bounds[r] for r in range(self.size)]
            flat = np.empty(total, params[0][1].dtype)
            share = np.empty(counts[self.rank], flat.dtype)
            from mpi4py.util.dtlib import from_numpy_dtype
            spec = [flat, counts, bounds[:-1], from_numpy_dtype(flat.dtype)]
            self._layout = key, offsets, bounds, counts, flat, share, spec
        return self._layout[1:]

    @property
    def share_bounds(self):
        """[b_0 = 0, b_1, ..., b_N = P]: rank r's share is elements b_r .. b_r+1 of the parameters flattened and
        put end to end in named_parameters() order (known once `pieces` or a step has made the layout)."""
        return None if self._layout is None else self._layout[2]

    def _parts(self, params, lo, hi):
        """(flattened parameter i's slice, the flat buffer's slice) for every part of elements lo .. hi."""
        offsets = self._split(params)[0]
        for i in range(len(params)):
            start, stop = max(lo, offsets[i]), min(hi, offsets[i + 1])
            if start < stop:
                yield i, slice(start - offsets[i], stop - offsets[i]), slice(start, stop)

    def pieces(self, params):
        bounds = self._split(params)[1]
        return {params[i][0]: (own.start, own.stop)
                for i, own, _ in self._parts(params, bounds[self.rank], bounds[self.rank + 1])}

    def sum_and_clip(self, params, loss, max_norm):
        """Sum every rank's gradients into this rank's share of them (one Reduce_scatter of one flat buffer),
        then the loss and the shares' Σ g² over the ranks (one Allreduce), and clip the share by the global
        norm -> (the summed loss, the norm). A rank whose rows do not count passes loss 0.0 and zeroed
        gradients. The gradients outside this rank's share are left as they were: only `pieces` are read."""
        _, bounds, counts, flat, share, _ = self._split(params)
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        for i, whole, at in self._parts(params, 0, bounds[-1]):
            flat[at] = params[i][2].reshape(-1)[whole]
        self.comm.Reduce_scatter(flat, share, recvcounts=counts, op=self.MPI.SUM)
        mine = []
        for i, whole, at in self._parts(params, lo, hi):
            grad = params[i][2].reshape(-1)[whole]
            grad[...] = share[at.start - lo:at.stop - lo]
            mine.append((params[i][0], None, grad))
        total = np.array([loss, sum_of_squares([g for _, _, g in mine])], np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)
        norm = clip_grad_norm(mine, max_norm, norm=float(np.sqrt(total[1])))
        return float(total[0]), norm

    def _gather(self, params, arrays):
        """Every rank's share of `arrays` (one array shaped like each parameter, in params' order) to every rank:
        one Allgatherv of the flat buffer."""
        _, bounds, _, flat, _, spec = self._split(params)
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        for i, whole, at in self._parts(params, lo, hi):
            flat[at] = arrays[i].reshape(-1)[whole]
        self.comm.Allgatherv(self.MPI.IN_PLACE, spec)
        for i, whole, at in self._parts(params, 0, lo):
            arrays[i].reshape(-1)[whole] = flat[at]
        for i, whole, at in self._parts(params, hi, bounds[-1]):
            arrays[i].reshape(-1)[whole] = flat[at]

    def share_weights(self, params):
        """After each rank updated its share of the weights: every rank's share to every rank."""
        self._gather(params, [value for _, value, _ in params])

    def gather_state(self, optimizer):
        """The optimizer's per-parameter state (Adam's moments), of which each rank updated its share, whole on
        every rank: before a checkpoint saves it. Every rank must call it."""
        params = optimizer.params
        for k in range(len(optimizer.buffers(params[0][0]))):
            arrays = [optimizer.buffers(name)[k] for name, _, _ in params]
            if arrays[0] is not None:
                self._gather(params, arrays)

    def agree_stop(self, over_time, signalled):
        """Stop when rank 0's clock says the budget is spent, or any rank got SIGINT/SIGTERM."""
        flags = np.array([over_time and self.rank == 0, signalled], np.int32)
        self.comm.Allreduce(self.MPI.IN_PLACE, flags, op=self.MPI.MAX)
        return bool(flags.any())

    def from_root(self, value):
        """Rank 0's `value` (numbers, strings, lists, dicts) on every rank."""
        return self.comm.bcast(value, root=0)

    def barrier(self):
        self.comm.Barrier()

    def rest_until_all_done(self):
        """Wait until every rank got here, asleep: MPICH's own waits (a Barrier, MPI_Finalize at exit) spin on a
        core, which the ranks done first would hold while rank 0 runs the final test alone."""
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(0.05)

    def note_finished(self):
        """Tell workers.py this rank ended normally, so that a rank which dies is told apart from one done."""
        if self._pid_dir:
            atomic_write(os.path.join(self._pid_dir, f"rank{self.rank}.done"), lambda f: None)


_WORLD = None


def note_finished():
    """This process ends normally: tell workers.py, if it started it (see MPIWorld.note_finished)."""
    if _WORLD is not None:
        _WORLD.note_finished()


def world():
    """This process's World, made once: MPIWorld when an MPI launcher started it among others, else Solo.
    ValueError when it was, but mpi4py is missing (N processes would otherwise each train alone)."""
    global _WORLD
    if _WORLD is None:
        size = launched_by_mpi()
        if size == 1:
            _WORLD = Solo()
        else:
            try:
                from mpi4py import MPI
            except ImportError:
                raise ValueError(f"started by mpiexec among {size} processes, but mpi4py is missing: "
                                 + MPI_HINT) from None
            _WORLD = MPIWorld(MPI.COMM_WORLD)
    return _WORLD
