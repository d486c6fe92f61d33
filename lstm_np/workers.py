"""`lstm-np train --workers N`: the run `mpiexec -n N lstm-np train ...` makes (data parallelism, parallel.py),
started for the user, with a one-line report when a worker dies.

This process starts MPI's `mpiexec` (the one installed beside this Python by `pip install "lstm_np[mpi]"`, else
the one on PATH) with the same train flags, passes the workers' output through, and waits. Ctrl-C reaches
mpiexec, which hands it to every worker: they stop at the same step and rank 0 checkpoints, as one process
would. When a worker dies (killed, out of memory), MPI ends the others at once; each worker noted its pid
and, when it ended normally, that it did (parallel.PID_DIR), so the first one to go without finishing is
named (MPICH's own report of the first pid to end badly breaks a tie), with the checkpoint a resumed run
continues from.
"""
import os
import re
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

__all__ = ["DIED", "check_workers", "find_mpiexec", "first_death", "run_workers"]

DIED = 4                 # `lstm-np train`'s exit status when a worker process died
HYDRA_LINES = ("=====", "=   ", "YOUR APPLICATION TERMINATED", "This typically refers to a problem",
               "Please see the FAQ", "[mpiexec@", "[proxy:")     # MPICH's own report of what this one tells
HYDRA_FIRST = re.compile(r"^=\s+PID (\d+) RUNNING AT ")   # in that report: the first process that ended badly


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
        named = []                                            # the pid MPICH names as the first to end badly
        threads = [threading.Thread(target=_pass_through, args=(proc.stdout, sys.stdout, False, named), daemon=True),
                   threading.Thread(target=_pass_through, args=(proc.stderr, sys.stderr, True, named), daemon=True),
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
        finished = {rank for rank, _ in exits if os.path.exists(os.path.join(folder, f"rank{rank}.done"))}
        first = first_death(exits, finished, named)
    if first is None:
        return status
    rank, pid = first
    ckpt = CheckpointDir(out)
    kept = (f"the last checkpoint (step {ckpt.manifest()['step']}) is kept in {out}: continue with "
            f"lstm-np train --out {out} --resume" if ckpt.exists() else "no checkpoint had been written yet")
    print(f"lstm-np: error: worker rank {rank} (pid {pid}) died before the run ended, and MPI stopped the "
          f"others; {kept}", file=sys.stderr)
    return DIED


def first_death(exits, finished, named):
    """The (rank, pid) of `exits` (in the order the watch saw them end) that died first: not among the ranks
    `finished`; or None. MPI ends the other workers within milliseconds of a death, so several can look ended at
    once to the watch: the pid MPICH's report `named` as the first to end badly wins; without it (another MPI),
    the watch's order stands."""
    died = [(rank, pid) for rank, pid in exits if rank not in finished]
    died.sort(key=lambda rank_pid: rank_pid[1] not in named)                 # stable: the watch's order after
    return died[0] if died else None


def _pass_through(stream, to, once, named):
    """The workers' lines, without MPICH's banner about a process that ended badly (run_workers says which,
    from the pid that banner names, appended to `named`); with `once`, a line already passed is not repeated
    (the same error met by every worker)."""
    seen = set()
    for line in stream:
        first = HYDRA_FIRST.match(line)
        if first:
            named.append(int(first.group(1)))
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
