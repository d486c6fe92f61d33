"""Data parallelism (parallel.py, workers.py): a batch's shares add up to the batch; N MPI ranks train the model
one process trains; a dead worker loses nothing.

The first tests need no MPI: they check the arithmetic the ranks rely on (Seq2Seq.loss with `rows`). The others
run `mpiexec` and skip, saying why, without the extra (pip install "lstm_np[mpi]").
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lstm_np as ln

from helpers import CLI, ENV, SRC, TGT, TINY_FLAGS, cli, load_metrics, make_data, make_model, ok, one_line_error
from lstm_np.losses import masked_cross_entropy
from lstm_np.parallel import MPIWorld, Solo
from lstm_np.workers import _pass_through, find_mpiexec, first_death

SRC4 = np.vstack([SRC, SRC[:1]])          # 4 rows: a batch that splits into shares of 2, or of 1 and 3
TGT4 = np.vstack([TGT, TGT[1:2]])


def loss_and_grads(model, rows, rng_states):
    """(loss, {name: grad}) of the rows `rows` of SRC4/TGT4, the dropout generators first set to `rng_states`."""
    for lstm, state in zip((model.encoder.lstm, model.decoder.lstm), rng_states):
        lstm.rng.bit_generator.state = state
    model.zero_grad()
    loss = model.loss(SRC4, TGT4, rows)
    model.backward()
    return loss, {name: g.copy() for name, _, g in model.named_parameters()}


@pytest.mark.parametrize("attention", [None, "luong"])
@pytest.mark.parametrize("cut", [1, 2, 3])
def test_the_shares_of_a_batch_add_up_to_its_loss_and_gradients_with_dropout(attention, cut):
    model = make_model("full", 2, True, attention=attention, seed=3, dropout=0.3, embed_dropout=0.3,
                       output_dropout=0.3)
    states = [lstm.rng.bit_generator.state for lstm in (model.encoder.lstm, model.decoder.lstm)]
    whole, grads = loss_and_grads(model, None, states)
    after = [lstm.rng.bit_generator.state for lstm in (model.encoder.lstm, model.decoder.lstm)]
    first, grads_first = loss_and_grads(model, slice(0, cut), states)
    first_after = [lstm.rng.bit_generator.state for lstm in (model.encoder.lstm, model.decoder.lstm)]
    second, grads_second = loss_and_grads(model, slice(cut, 4), states)
    assert first + second == pytest.approx(whole, rel=1e-13, abs=0)
    for name, g in grads.items():
        np.testing.assert_allclose(grads_first[name] + grads_second[name], g, rtol=1e-12, atol=1e-15, err_msg=name)
    assert first_after == after, "a share must leave the dropout generators where the whole batch does"
    assert 0 < first < whole and 0 < second < whole


def test_a_share_is_a_slice_of_consecutive_rows():
    model = make_model()
    for rows, error in [([0, 1], TypeError), (slice(0, 4, 2), ValueError), (slice(2, 2), ValueError)]:
        with pytest.raises(error, match="rows"):
            model.loss(SRC4, TGT4, rows)


def test_cross_entropy_over_a_larger_batchs_token_count():
    rng = np.random.default_rng(0)
    logits, targets = rng.normal(size=(3, 2, 5)), rng.integers(0, 5, size=(3, 2))
    mask = np.array([[1, 1], [1, 0], [0, 0]], bool)
    mean, dmean = masked_cross_entropy(logits, targets, mask)
    share, dshare = masked_cross_entropy(logits, targets, mask, count=6)     # 3 real tokens of a batch's 6
    assert share == pytest.approx(mean * 3 / 6, rel=1e-15)
    np.testing.assert_allclose(dshare, dmean * 3 / 6, rtol=1e-15)
    with pytest.raises(ValueError, match="count"):
        masked_cross_entropy(logits, targets, mask, count=2)    # fewer than the real tokens given


class Comm:
    """The part of an MPI communicator that MPIWorld reads without communicating."""
    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


def test_rows_of_a_batch_cover_it_once():
    pytest.importorskip("mpi4py", reason='the MPI extra is not installed: pip install "lstm_np[mpi]"')
    for size in (2, 3, 4):
        worlds = [MPIWorld(Comm(r, size)) for r in range(size)]
        for batch in (1, 2, 5, 64, 65):
            shares = [w.rows(batch) for w in worlds]
            if batch < size:     # everyone computes all rows (the same dropout draws), rank 0's count
                assert shares == [(None, r == 0) for r in range(size)]
            else:
                covered = [i for rows, counts in shares for i in range(batch)[rows]]
                assert covered == list(range(batch)) and all(c for _, c in shares)
    assert Solo().rows(7) == (None, True)


def test_the_ranks_pieces_of_the_parameters_cover_each_element_once():
    pytest.importorskip("mpi4py", reason='the MPI extra is not installed: pip install "lstm_np[mpi]"')
    params = ln.Seq2Seq(9, 11, hidden_size=6, embed_size=5, attention="luong").named_parameters()
    for size in (2, 3):
        owner = {name: np.full(value.size, -1) for name, value, _ in params}
        for r in range(size):
            for name, (start, stop) in MPIWorld(Comm(r, size)).pieces(params).items():
                assert (owner[name][start:stop] == -1).all(), f"{name} {start}:{stop} has two owners"
                owner[name][start:stop] = r
        assert all((o >= 0).all() for o in owner.values())
    assert Solo().pieces(params) is None
    other = [(n, np.asfortranarray(np.zeros(v.shape, v.dtype)) if k == 1 else v, g)   # W_x (5, 24), column-major
             for k, (n, v, g) in enumerate(params)]
    with pytest.raises(ValueError, match="C-contiguous"):
        MPIWorld(Comm(0, 2)).pieces(other)


# ----------------------------------------------------------------------------- with MPI
def mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'the MPI extra is not installed: pip install "lstm_np[mpi]"'
    if find_mpiexec() is None:
        return "mpiexec is not installed"
    return None


needs_mpi = pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))
MPIEXEC = find_mpiexec()
FLOAT64 = TINY_FLAGS + ["--train", "A.tsv", "--test", "B.tsv", "--dtype", "float64", "--layers", "2",
                        "--dropout", "0.2", "--embed-dropout", "0.1", "--output-dropout", "0.1", "--eval-every", "10",
                        "--average-decay", "0.9"]


def mpiexec(n, args, cwd):
    return subprocess.run([MPIEXEC, "-n", str(n)] + CLI + [str(a) for a in args], cwd=cwd, env=ENV,
                          encoding="utf-8", capture_output=True, timeout=120)


@needs_mpi
def test_per_step_gradients_of_two_ranks_equal_one_process(tmp_path):
    """tests/mpi_gradients.py trains 12 float64 steps (dropout everywhere, batches of 19 and one of 1) on 2 ranks,
    then on rank 0 alone, and compares each step's summed gradient."""
    script = os.path.join(os.path.dirname(__file__), "mpi_gradients.py")
    make_data(tmp_path)
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, script, str(tmp_path)], cwd=tmp_path, env=ENV,
                         encoding="utf-8", capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["steps"] == 12 and result["ranks"] == 2
    assert result["max_relative_difference"] < 1e-12, result
    assert result["max_relative_difference"] > 0 or result["identical"], result


@needs_mpi
def test_workers_and_mpiexec_train_the_model_one_process_trains_and_resume_with_any_number(tmp_path):
    make_data(tmp_path)
    ok(cli(["train", *FLOAT64, "--steps", "30", "--out", "one", "--metrics-out", "one.json"], tmp_path))
    ok(cli(["train", *FLOAT64, "--steps", "30", "--out", "two", "--metrics-out", "two.json", "--workers", "2"],
           tmp_path))
    # a run of 2 ranks stopped at step 20, resumed on 3 ranks, then on 1 process
    ok(mpiexec(2, ["train", *FLOAT64, "--steps", "20", "--out", "mixed"], tmp_path))
    ok(mpiexec(3, ["train", "--out", "mixed", "--resume", "--steps", "25"], tmp_path))
    ok(cli(["train", "--out", "mixed", "--resume", "--steps", "30", "--metrics-out", "mixed.json"], tmp_path))
    one, two, mixed = (load_metrics(tmp_path / f"{name}.json") for name in ("one", "two", "mixed"))
    for other in (two, mixed):
        assert other["steps"] == 30
        assert other["final_loss"] == pytest.approx(one["final_loss"], rel=1e-6)
        assert [p["exact_match"] for p in other["history"]] == [p["exact_match"] for p in one["history"]]
        assert other["test_exact_match"] == one["test_exact_match"]
    assert (tmp_path / "two" / "checkpoint.json").exists()
    assert (one["workers"], two["workers"], mixed["workers"]) == (1, 2, 1)
    # the weight average, of which each rank kept its share, whole in every checkpoint
    averages = {}
    for name in ("one", "two", "mixed"):
        manifest = json.loads((tmp_path / name / "checkpoint.json").read_text())
        with np.load(tmp_path / name / manifest["optimizer"]) as z:
            averages[name] = {k: z[k] for k in z.files if k.startswith("average/")}
    assert averages["one"] and all(np.any(a != 0) for a in averages["one"].values())
    for other in ("two", "mixed"):
        assert sorted(averages[other]) == sorted(averages["one"])
        for key, value in averages["one"].items():
            np.testing.assert_allclose(averages[other][key], value, rtol=1e-6, atol=1e-12, err_msg=f"{other} {key}")


@needs_mpi
def test_killing_a_worker_gives_one_line_and_a_checkpoint_that_resumes(tmp_path):
    make_data(tmp_path)
    proc = subprocess.Popen(CLI + ["train", *TINY_FLAGS, "--train", "A.tsv", "--max-seconds", "60", "--eval-every",
                                   "20", "--out", "run", "--workers", "2"], cwd=tmp_path, env=ENV, encoding="utf-8",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "checkpoint.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = {}
    for rank in (0, 1):        # this run's workers' pids: their command lines, environment and folder
        for line in subprocess.run(["pgrep", "-f", "-a", "lstm_np train"], capture_output=True,
                                   encoding="utf-8").stdout.splitlines():
            pid = int(line.split()[0])
            try:
                environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                here = os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(tmp_path)   # not another suite's run on this machine
            except OSError:
                continue
            if pid != proc.pid and here and f"PMI_RANK={rank}".encode() in environ \
                    and b"LSTM_NP_WORKER_DIR=" in b" ".join(environ):
                pids[rank] = pid
    os.kill(pids[1], signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    line = one_line_error(result, f"worker rank 1 (pid {pids[1]}) died", "--resume", code=4)
    assert "BAD TERMINATION" not in out + err
    step = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"]
    assert f"step {step})" in line
    resumed = ok(cli(["train", "--out", "run", "--resume", "--steps", str(step + 10), "--metrics-out", "m.json"],
                     tmp_path))
    assert f"resumed {tmp_path / 'run'} at step {step}" in resumed.stdout or f"at step {step}" in resumed.stdout
    assert load_metrics(tmp_path / "m.json")["steps"] == step + 10


# MPICH's report when rank 1 (pid 4690) of 2 was killed with SIGKILL, as mpiexec printed it
HYDRA_REPORT = """
===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   PID 4690 RUNNING AT vm
=   EXIT CODE: 9
=   CLEANING UP REMAINING PROCESSES
=   YOU CAN IGNORE THE BELOW CLEANUP MESSAGES
===================================================================================
YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)
This typically refers to a problem with your application.
Please see the FAQ page for debugging suggestions
"""


def test_the_worker_mpich_names_is_the_one_that_died_first_even_when_the_watch_saw_another_end_first():
    """MPI kills the other ranks within milliseconds, so the watch can see rank 0 end first; MPICH's report
    names the pid that ended badly first."""
    import io
    named, shown = [], io.StringIO()
    _pass_through(io.StringIO("step 20 | loss 1.0\n" + HYDRA_REPORT), shown, False, named)
    assert named == [4690]
    assert shown.getvalue() == "step 20 | loss 1.0\n"                  # the banner itself is not shown
    exits = [(0, 4689), (1, 4690)]                                        # the order the watch saw
    assert first_death(exits, set(), named) == (1, 4690)
    assert first_death(exits, set(), []) == (0, 4689)                   # no report: the watch's order
    assert first_death(exits, {0}, []) == (1, 4690)                     # rank 0 had finished its run
    assert first_death(exits, {0, 1}, named) is None                    # every rank finished


@needs_mpi
def test_bad_worker_counts_are_one_line_errors(tmp_path):
    make_data(tmp_path)
    one_line_error(cli(["train", *TINY_FLAGS, "--train", "A.tsv", "--workers", "9", "--steps", "2"], tmp_path),
                   "--workers 9 is more than --batch-size 8")
    under_mpiexec = mpiexec(2, ["train", *TINY_FLAGS, "--train", "A.tsv", "--workers", "2", "--steps", "2"],
                            tmp_path)
    one_line_error(under_mpiexec, "--workers starts its own MPI processes")
    assert not (tmp_path / "runs").exists()


def test_workers_without_mpi4py_says_how_to_install_it(tmp_path):
    """A Python without mpi4py (simulated by a module that fails to import) gets the install line."""
    make_data(tmp_path)
    (tmp_path / "mpi4py.py").write_text("raise ImportError('simulated: no mpi4py')\n")
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")]))
    run = subprocess.run(CLI + ["train", *TINY_FLAGS, "--train", "A.tsv", "--workers", "2", "--steps", "2"],
                         cwd=tmp_path, env=env, encoding="utf-8", capture_output=True, timeout=120)
    one_line_error(run, "--workers needs MPI", 'pip install "lstm_np[mpi]"')


@needs_mpi
def test_ctrl_c_stops_every_worker_at_the_same_step_after_a_checkpoint(tmp_path):
    """Ctrl-C reaches the whole foreground process group: here `lstm-np train --workers 2` and its mpiexec."""
    make_data(tmp_path)
    proc = subprocess.Popen(CLI + ["train", *TINY_FLAGS, "--train", "A.tsv", "--max-seconds", "60", "--eval-every",
                                   "20", "--out", "run", "--workers", "2"], cwd=tmp_path, env=ENV, encoding="utf-8",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "checkpoint.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    line = one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "SIGINT: stopped at step",
                          code=130)
    step = int(line.split("stopped at step ")[1].split(";")[0])
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["step"] == step
    ok(cli(["train", "--out", "run", "--resume", "--steps", str(step + 5)], tmp_path))


@needs_mpi
def test_a_missing_data_file_is_said_once_by_workers_and_by_each_rank_under_mpiexec(tmp_path):
    args = ["train", *TINY_FLAGS, "--train", "missing.tsv", "--steps", "2"]
    one_line_error(cli([*args, "--workers", "2"], tmp_path), "missing.tsv")
    lines = sorted(line for line in mpiexec(2, args, tmp_path).stderr.splitlines() if line.strip())
    assert len(lines) == 2 and all(line.endswith("missing.tsv: no such file") for line in lines), lines
    assert lines[0].startswith("lstm-np: error: ") and lines[1].startswith("lstm-np: rank 1 on "), lines
