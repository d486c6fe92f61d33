"""`lstm-np sweep`: grids of tiny runs on local workers and on a real Dask cluster, results.csv as runs finish,
resume, failing runs, killed workers, Ctrl-C; and the summary's statistics against textbook values."""
import csv
import io
import json
import os
import signal
import time

import numpy as np
import pytest

from lstm_np import study
from lstm_np.sweep import RESULT_COLUMNS, SweepError, parse_grid

from helpers import cli, make_data, ok, one_line_error, start


SWEEP = ["sweep", "--train", "A.tsv", "--test", "B.tsv", "--embed-size", 8, "--batch-size", 8, "--log-every", 5]
H8 = ["--hidden-size", 8]    # for the sweeps whose grid is not over the hidden size


def rows(folder):
    with open(folder / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def wait_for(predicate, timeout=60.0, what="the condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running_marker(folder, run_id=None):
    """(run id, worker pid) of a run in flight, from the marker file its worker writes, or None."""
    runs = folder / "runs"
    for name in sorted(os.listdir(runs)) if runs.exists() else []:
        if name.endswith(".running") and (run_id is None or name == run_id + ".running"):
            text = (runs / name).read_text().strip()
            if text:
                return name[:-len(".running")], int(text)
    return None


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep over a valid and an invalid hidden size, 2 seeds, 2 workers; and its rerun."""
    folder = tmp_path_factory.mktemp("sweep")
    make_data(folder)
    args = SWEEP + ["--grid", "hidden_size=8,0", "--seeds", 2, "--steps", 12, "--eval-every", 4, "--workers", 2,
                    "--out", "sw", "--plot", "sw.png"]
    first = cli(args, folder)
    before = (folder / "sw" / "results.csv").read_text()
    again = cli(args, folder)
    return folder, first, before, again


def test_sweep_records_one_row_per_run_with_errors_named_and_exits_nonzero(swept):
    folder, first, _, _ = swept
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    assert first.stderr.strip().splitlines()[-1] == ("lstm-np: 2 of 4 runs failed (status error in "
                                                     "sw/results.csv; --retry-errors runs them again)")
    table = rows(folder / "sw")
    assert list(table[0]) == ["hidden_size"] + list(RESULT_COLUMNS)
    assert [(r["hidden_size"], r["seed"], r["status"]) for r in table] == [
        ("8", "0", "ok"), ("8", "1", "ok"), ("0", "0", "error"), ("0", "1", "error")]
    for r in table[:2]:
        assert 0 <= float(r["test_exact_match"]) <= 1 and r["steps"] == "12" and r["error"] == ""
        metrics = json.loads((folder / "sw" / "runs" / f"hidden_size=8__seed={r['seed']}.json").read_text())
        assert [p["step"] for p in metrics["history"]] == [4, 8, 12], "each run keeps its learning curve"
        assert metrics["config"]["seed"] == int(r["seed"]) and metrics["config"]["hidden_size"] == 8
        assert float(r["test_token_error_rate"]) == pytest.approx(metrics["test_token_error_rate"], rel=1e-5)
    for r in table[2:]:
        assert "hidden_size=0" in r["error"] and "positive integer" in r["error"]
    progress = [line for line in first.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and any(line.startswith("[4/4] ") for line in progress)
    assert any("hidden_size=8 seed=1: exact match" in line for line in progress)
    assert (folder / "sw.png").stat().st_size > 10_000


def test_the_same_sweep_again_runs_nothing_and_keeps_the_rows(swept):
    folder, _, before, again = swept
    assert again.returncode == 1
    assert "4 already done; 0 to run" in again.stdout
    assert (folder / "sw" / "results.csv").read_text() == before
    assert not [line for line in again.stdout.splitlines() if line.startswith("[")]


def test_a_results_csv_written_before_the_token_error_rate_column_still_reads(swept):
    folder, _, before, _ = swept
    table = list(csv.reader(before.splitlines()))
    drop = table[0].index("test_token_error_rate")
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(row[:drop] + row[drop + 1:] for row in table)
    try:
        (folder / "sw" / "results.csv").write_text(text.getvalue())
        again = cli(SWEEP + ["--grid", "hidden_size=8,0", "--seeds", 2, "--steps", 12, "--eval-every", 4,
                             "--workers", 2, "--out", "sw"], folder)
        assert "4 already done; 0 to run" in again.stdout, again.stdout + again.stderr
        assert "Traceback" not in again.stdout + again.stderr
        summary = ok(cli(["sweep", "--summary", "sw"], folder)).stdout.splitlines()
        assert summary[2].startswith("| 8 | 2 | ") and summary[3].startswith("| 0 | 0/2 | - |")
        retried = cli(SWEEP + ["--grid", "hidden_size=8,0", "--seeds", 2, "--steps", 12, "--eval-every", 4,
                               "--workers", 2, "--out", "sw", "--retry-errors"], folder)   # rows written again
        assert "Traceback" not in retried.stdout + retried.stderr
        now = rows(folder / "sw")
        assert list(now[0]) == ["hidden_size"] + list(RESULT_COLUMNS), "the file gains the column"
        old_rows = list(csv.DictReader(text.getvalue().splitlines()))
        for row, old in zip(now[:2], old_rows[:2]):                    # the finished runs, kept as they were
            assert row == {**old, "test_token_error_rate": ""}
    finally:
        (folder / "sw" / "results.csv").write_text(before)


def test_summary_prints_means_and_intervals_per_grid_point(swept):
    folder, first, _, _ = swept
    r = ok(cli(["sweep", "--summary", "sw"], folder))
    assert r.stdout.splitlines()[0].startswith("| hidden_size | runs | test exact match % |")
    assert r.stdout.splitlines()[3].startswith("| 0 | 0/2 | - |")
    assert r.stdout == (folder / "sw" / "summary.md").read_text()
    assert r.stdout.strip() in first.stdout


def test_a_sweep_refuses_other_train_options_in_the_same_folder(swept):
    folder, _, before, _ = swept
    r = cli(SWEEP + ["--grid", "hidden_size=8,0", "--seeds", 2, "--steps", 13, "--out", "sw"], folder)
    one_line_error(r, "sw holds a sweep with other train options", "steps: 12 then, 13 now")
    r = cli(SWEEP + ["--grid", "lr=0.1", "--seeds", 2, "--steps", 12, "--out", "sw"], folder)
    one_line_error(r, "other grid keys")
    assert (folder / "sw" / "results.csv").read_text() == before


@pytest.mark.parametrize("grid, words", [
    ("seed=1,2", ["'seed' is not a train option", "--seeds"]),
    ("hidden=8", ["'hidden' is not a train option"]),
    ("hidden_size", ["expected KEY=V1,V2"]),
    ("hidden_size=8,8", ["distinct"]),
])
def test_bad_grids_are_refused_in_one_line(tmp_path, grid, words):
    make_data(tmp_path)
    one_line_error(cli(SWEEP + H8 + ["--grid", grid, "--steps", 2], tmp_path), *words)
    assert not (tmp_path / "runs").exists()


def test_grid_keys_take_either_spelling_and_switches_take_true_false():
    assert parse_grid(["hidden-size=8,16", "peeky=true,false"], {"hidden_size", "peeky"}) == \
        {"hidden_size": ["8", "16"], "peeky": ["true", "false"]}
    with pytest.raises(SweepError, match="given twice"):
        parse_grid(["lr=1", "lr=2"], {"lr"})


def test_switch_values_reach_the_runs_config(tmp_path):
    make_data(tmp_path)
    r = ok(cli(SWEEP + H8 + ["--grid", "peeky=false,true", "--grid", "bidirectional=yes", "--seeds", 1, "--steps", 2,
                        "--workers", 1, "--out", "s"], tmp_path))
    configs = [json.loads((tmp_path / "s" / "runs" / f"peeky={v}__bidirectional=yes__seed=0.json").read_text())
               ["config"] for v in ("false", "true")]
    assert [(c["peeky"], c["bidirectional"]) for c in configs] == [(False, True), (True, True)], r.stdout


def test_sweep_on_a_dask_cluster_over_loopback(tmp_path):
    distributed = pytest.importorskip("distributed")
    make_data(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        r = cli(SWEEP + ["--grid", "peephole=full,none", "--grid", "hidden_size=8,0", "--seeds", 1, "--steps", 6,
                         "--out", "d", "--scheduler", cluster.scheduler_address], tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"on the Dask cluster at {cluster.scheduler_address}" in r.stdout
    assert [(x["peephole"], x["hidden_size"], x["status"]) for x in rows(tmp_path / "d")] == [
        ("full", "8", "ok"), ("full", "0", "error"), ("none", "8", "ok"), ("none", "0", "error")]


def test_unreachable_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    make_data(tmp_path)
    r = cli(SWEEP + H8 + ["--grid", "peephole=none", "--seeds", 1, "--steps", 2, "--out", "d", "--scheduler",
                     "tcp://127.0.0.1:9"], tmp_path)
    one_line_error(r, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")


LONG = ["--steps", 600, "--eval-every", 1000]    # a few seconds per run: long enough to be killed mid-run


def test_a_killed_worker_loses_only_time_its_runs_are_retried(tmp_path):
    make_data(tmp_path)
    proc = start(SWEEP + H8 + ["--grid", "peephole=full,none", "--seeds", 1, "--workers", 2, "--out", "k"] + LONG,
                 tmp_path)
    _, pid = wait_for(lambda: running_marker(tmp_path / "k"), what="a run to start")
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "a worker process died" in err
    assert [(x["peephole"], x["status"]) for x in rows(tmp_path / "k")] == [("full", "ok"), ("none", "ok")]


def test_a_run_that_kills_its_worker_twice_is_recorded_as_error_and_the_others_finish(tmp_path):
    make_data(tmp_path)
    proc = start(SWEEP + H8 + ["--grid", "peephole=full,none", "--seeds", 1, "--workers", 2, "--out", "k"] + LONG,
                 tmp_path)
    victim, killed = "peephole=full__seed=0", set()
    while proc.poll() is None and len(killed) < 2:        # kill every worker that runs the victim, twice
        found = running_marker(tmp_path / "k", victim)
        if found and found[1] not in killed:
            try:
                os.kill(found[1], signal.SIGKILL)
                killed.add(found[1])
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=300)
    assert len(killed) == 2, out + err
    assert proc.returncode == 1
    table = {x["peephole"]: x for x in rows(tmp_path / "k")}
    assert table["none"]["status"] == "ok"
    assert table["full"]["status"] == "error" and "worker process died while running it, twice" in table["full"]["error"]


def test_ctrl_c_stops_cleanly_keeping_every_finished_row(tmp_path):
    make_data(tmp_path)
    proc = start(SWEEP + H8 + ["--grid", "steps=4,3000", "--seeds", 1, "--workers", 2, "--eval-every", 1000,
                          "--out", "c"], tmp_path)
    wait_for(lambda: (tmp_path / "c" / "results.csv").exists(), what="the first row")
    wait_for(lambda: running_marker(tmp_path / "c", "steps=3000__seed=0"), what="the long run")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; 1 of 2 runs are in" in err
    assert [(x["steps"], x["status"]) for x in rows(tmp_path / "c")] == [("4", "ok")]
    assert not [n for n in os.listdir(tmp_path / "c") if n.startswith(".tmp-")]


# ----------------------------------------------------------------------------- statistics

def test_t_quantiles_match_published_tables():
    # two-sided 95% critical values of Student's t (any statistics table)
    for df, value in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (40, 2.021), (60, 2.000),
                      (120, 1.980), (1000, 1.962)]:
        assert abs(study.t975(df) - value) < 1.5e-3, (df, study.t975(df), value)


def test_mean_ci_of_known_samples():
    mean, half = study.mean_ci([0.9, 0.95, 1.0])
    assert mean == pytest.approx(0.95) and half == pytest.approx(4.303 * 0.05 / np.sqrt(3), rel=1e-4)
    assert study.mean_ci([0.5]) == (0.5, None) and study.mean_ci([]) == (None, None)


def test_summary_groups_by_grid_point_and_times_runs_to_the_threshold():
    def row(p, seed, status="ok", em="1.0"):
        return {"peephole": p, "seed": str(seed), "status": status, "test_exact_match": em,
                "test_token_accuracy": "1.0", "test_bleu": "100"}

    curve = [{"step": s, "seconds": s / 10, "exact_match": e} for s, e in [(100, 0.5), (200, 0.995), (300, 1.0)]]
    late = [{"step": s, "seconds": s / 10, "exact_match": e} for s, e in [(100, 0.5), (200, 0.9), (300, 0.991)]]
    summary = study.summarize([row("full", 0), row("full", 1, em="0.9"), row("none", 0), row("none", 1, "error")],
                              ["peephole"], [curve, late, curve, []], threshold=0.99)
    full, none = summary
    assert (full["runs"], full["ok"], full["reached"], none["runs"], none["ok"]) == (2, 2, 2, 2, 1)
    assert full["steps_to"][0] == 250 and full["seconds_to"][0] == 25
    assert full["valid_at_end"][0] == pytest.approx((1.0 + 0.991) / 2) and none["valid_at_end"] == (1.0, None)
    assert full["test_exact_match"][0] == pytest.approx(0.95) and none["test_exact_match"] == (1.0, None)
    table = study.format_summary(summary, ["peephole"], 0.99)
    assert "| full | 2 | 95.0 ± 63.5 |" in table and "| none | 1/2 | 100.0 |" in table


def test_a_sweep_folder_moved_with_its_data_is_still_the_same_sweep(tmp_path):
    (tmp_path / "a").mkdir()
    make_data(tmp_path / "a")
    args = SWEEP + H8 + ["--grid", "peephole=none", "--seeds", 1, "--steps", 2, "--out", "s"]
    ok(cli(args, tmp_path / "a"))
    assert json.loads((tmp_path / "a" / "s" / "sweep.json").read_text())["train_options"]["train"] == "../A.tsv"
    (tmp_path / "a").rename(tmp_path / "b")
    r = ok(cli(args, tmp_path / "b"))
    assert "1 already done; 0 to run" in r.stdout


def test_format_interval_writes_mean_and_half_width_scaled_and_rounded():
    assert study.format_interval((0.95123, 0.01234), scale=100) == "95.1 ± 1.2"
    assert study.format_interval((0.95123, 0.01234), scale=100, digits=2) == "95.12 ± 1.23"
    assert study.format_interval((250.4, 12.6), digits=0) == "250 ± 13"
    assert study.format_interval((0.5, None), scale=100) == "50.0"          # one run: no interval
    assert study.format_interval((None, None)) == "-"                       # no runs


def test_first_reach_is_the_first_point_at_or_above_the_threshold():
    curve = [{"step": 10, "seconds": 1.5, "exact_match": 0.4}, {"step": 20, "seconds": 3.0, "exact_match": 0.99},
             {"step": 30, "seconds": 4.5, "exact_match": 0.995}, {"step": 40, "seconds": 6.0, "exact_match": 0.98}]
    assert study.first_reach(curve, 0.99) == (20, 3.0)                      # reaching it exactly counts
    assert study.first_reach(curve, 0.991) == (30, 4.5)                     # the first above, not the best
    assert study.first_reach(curve, 0.3) == (10, 1.5)
    assert study.first_reach(curve, 0.999) is None and study.first_reach([], 0.5) is None
