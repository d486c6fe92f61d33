"""Data parallelism: one model trained by N processes (MPI ranks), each computing a share of every batch.

Every rank reads the same data, draws the same batch order from the same seed and holds the same weights.
One optimizer step:

    1. rank r takes rows lo_r:hi_r of the batch (`rows`): Seq2Seq.loss(src, tgt, rows) sums their
       cross-entropy over the whole batch's tokens, with those rows of the whole batch's dropout masks, so
       the ranks' losses and gradients are shares that add up to the one-process batch's
    2. one Allreduce(SUM) of a flat buffer holding every gradient (`sum_gradients`), and one of the loss
    3. every rank clips the same summed gradient and takes the same Adam step: the weights stay identical

What is decided once is rank 0's and shared: the time budget (rank 0's clock), a validation point and its
result, the learning rate's horizon, a stop on a signal to any rank. Rank 0 alone writes the run folder
(checkpoints, metrics, the log). The run folder holds no trace of the number of ranks, so a run resumes
with any number of them.

`world()` is this process's World: `Solo` (size 1, no MPI at all) unless the process was started by an MPI
launcher (`mpiexec -n N lstm-np train ...`, or `lstm-np train --workers N`, workers.py), then `MPIWorld`
over mpi4py's COMM_WORLD. mpi4py is an optional extra: pip install "lstm_np[mpi]".
"""
import os

import numpy as np

from .files import atomic_write

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

    def sum_gradients(self, params, loss):
        return loss

    def agree_stop(self, over_time, signalled):
        return over_time or signalled

    def from_root(self, value):
        return value

    def barrier(self):
        pass

    def note_finished(self):
        pass


class MPIWorld(Solo):
    """The world of rank `comm.rank` among `comm.size` (mpi4py's communicator)."""

    def __init__(self, comm):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._flat = None
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

    def sum_gradients(self, params, loss):
        """Replace every parameter's gradient by its sum over the ranks (one Allreduce of one flat buffer);
        -> the summed loss. A rank whose share does not count passes loss 0.0 and zeroed gradients."""
        if self._flat is None:
            self._flat = np.empty(sum(g.size for _, _, g in params), params[0][2].dtype)
        flat, offset = self._flat, 0
        for _, _, g in params:
            flat[offset:offset + g.size] = g.ravel()
            offset += g.size
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        offset = 0
        for _, _, g in params:
            g[...] = flat[offset:offset + g.size].reshape(g.shape)
            offset += g.size
        total = np.array([loss], np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, total, op=self.MPI.SUM)
        return float(total[0])

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
