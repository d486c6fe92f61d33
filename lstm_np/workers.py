"""`lstm-np train --workers N`: the run `mpiexec -n N lstm-np train ...` makes (data parallelism, parallel.py),
started for the user, with a one-line report when a worker dies.

This process starts MPI's `mpiexec` (the one installed beside this Python by `pip install "lstm_np[mpi]"`, else
the one on PATH) with the same train flags, passes the workers' output through, and waits. Ctrl-C reaches
mpiexec, which hands it to every worker: they stop at the same step and rank 0 checkpoints, as one process
would. When a worker dies (killed, out of memory), MPI ends the others at once; each worker noted its pid
and, when it ended normally, that it did (parallel.PID_DIR), so the first one to go without finishing is
named, with the checkpoint a resumed run continues from.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .checkpoint import CheckpointDir
from .parallel import MPI_HINT, PID_DIR, launched_by_mpi, started_by_workers

__all__ = ["DIED", "check_workers", "find_mpiexec", "run_workers"]

DIED = 4                 # `lstm-np train`'s exit status when a worker process died
HYDRA_LINES = ("=====", "=   ", "YOUR APPLICATION TERMINATED", "This typically refers to a problem",
               "Please see the FAQ", "[mpiexec@", "[proxy:")     # MPICH's own report of what this one tells


def check_workers(workers, batch_size):
    """ValueError for a --workers that cannot run; -> the path of mpiexec."""
    if launched_by_mpi() > 1 and not started_by_workers():
        raise ValueError("--workers starts its own MPI processes: under mpiexec leave it out "
                         "(mpiexec -n N sets the number of workers)")
    if workers > batch_size:
        raise ValueError(f"--workers {workers} is more than --batch-size {batch_size}: each worker computes a "
                         f"share of every batch")
    try:
        import mpi4py  # noqa: F401  (the workers need it; checked here so that the error is one line, once)
    except ImportError:
        raise ValueError(f"--workers needs MPI: {MPI_HINT}") from None
    found = find_mpiexec()
    if found is None:
        raise ValueError(f"--workers needs MPI's mpiexec, found neither beside {sys.executable} nor on PATH: "
                         f"{MPI_HINT}")
    return found


def find_mpiexec():
    """The mpiexec beside this Python (where the mpi extra's MPICH installs it), else the one on PATH, or None."""
    return shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def run_workers(mpiexec, workers, argv, out):
    """Run `lstm-np <argv>` (its train command with --workers) as `workers` MPI ranks; -> the exit status (the
    ranks' own, or DIED)."""
    with tempfile.TemporaryDirectory(prefix="lstm-np-workers-") as folder:
        cmd = [mpiexec, "-n", str(workers), sys.executable, "-m", "lstm_np", *argv]
        proc = subprocess.Popen(cmd, env={**os.environ, PID_DIR: folder}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)
        exits = []                                            # ranks in the order their processes ended
        threads = [threading.Thread(target=_pass_through, args=(proc.stdout, sys.stdout, False), daemon=True),
                   threading.Thread(target=_pass_through, args=(proc.stderr, sys.stderr, True), daemon=True),
                   threading.Thread(target=_watch, args=(folder, workers, proc, exits), daemon=True)]
        for t in threads:
            t.start()
        # Ctrl-C goes to mpiexec too (the same process group), which forwards it to the workers; a TERM sent
        # to this process is passed on the same way
        old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
               signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))}
        try:
            status = proc.wait()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        for t in threads:
            t.join(timeout=5)
        died = [(rank, pid) for rank, pid in exits if not os.path.exists(os.path.join(folder, f"rank{rank}.done"))]
    if not died:
        return status
    rank, pid = died[0]
    ckpt = CheckpointDir(out)
    kept = (f"the last checkpoint (step {ckpt.manifest()['step']}) is kept in {out}: continue with "
            f"lstm-np train --out {out} --resume" if ckpt.exists() else "no checkpoint had been written yet")
    print(f"lstm-np: error: worker rank {rank} (pid {pid}) died before the run ended, and MPI stopped the "
          f"others; {kept}", file=sys.stderr)
    return DIED


def _pass_through(stream, to, once):
    """The workers' lines, without MPICH's banner about a process that ended badly (run_workers says which);
    with `once`, a line already passed is not repeated (the same error met by every worker)."""
    seen = set()
    for line in stream:
        if not line.startswith(HYDRA_LINES) and line.strip() and not (once and line in seen):
            seen.add(line)
            to.write(line)
            to.flush()


def _watch(folder, workers, proc, exits):
    """Append (rank, pid) to `exits` as each worker's process ends, in that order (Linux pidfds)."""
    pids = {}
    while len(pids) < workers and proc.poll() is None:      # each rank notes its pid when it starts
        for rank in range(workers):
            path = os.path.join(folder, f"rank{rank}.pid")
            if rank not in pids and os.path.exists(path):
                with open(path) as f:
                    pids[rank] = int(f.read())
        time.sleep(0.05)
    fds = {}
    for rank, pid in pids.items():
        try:
            fds[os.pidfd_open(pid)] = (rank, pid)
        except (ProcessLookupError, AttributeError, OSError):
            exits.append((rank, pid))                         # gone already
    while fds:
        ready, _, _ = select.select(list(fds), [], [])
        for fd in ready:
            exits.append(fds.pop(fd))
            os.close(fd)
