"""What the benchmarks share (benchmarks/common.py) does what their tables claim: a failed `lstm-np train` run is
reported as failed, the PyTorch yardstick reads its source as lstm_np's Seq2Seq does (reversed within each
row's length, padding ignored), and the time-to-accuracy table names the system that scored higher."""
import importlib.util
import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)                     # where the scripts import common.py from, as when run
import bench_time_to_accuracy  # noqa: E402
import common  # noqa: E402

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def row(ours, theirs):
    return {"task": "t", "seconds": 30.0, "lstm_np": {"test_exact_match": ours, "steps": 10, "cpu_seconds": 29.0},
            "torch": {"test_exact_match": theirs, "steps": 10, "cpu_seconds": 31.0}}


def test_time_to_accuracy_table_names_pytorch_when_lstm_np_trails():
    lines = bench_time_to_accuracy.budgets_table([row(0.95, 0.97), row(0.99, 0.97), row(1.0, 1.0)], True)
    cells = [line.strip("| ").split(" | ") for line in lines.splitlines()[2:]]
    assert [c[-1] for c in cells] == ["**PyTorch**", "lstm_np", "tie"], lines
    assert [c[-2] for c in cells] == ["0.98", "1.02", "1.00"], lines


def test_a_failed_lstm_np_run_is_reported_with_its_error(tmp_path):
    m = common.train_lstm_np(["--train", str(tmp_path / "missing.tsv"), "--steps", "1"], str(tmp_path), "run")
    assert set(m) == {"failed"} and "missing.tsv" in m["failed"], m


@needs_torch
def test_yardstick_reads_the_source_reversed_within_each_rows_length():
    torch = common.load_torch()
    torch.manual_seed(0)
    model = common.TorchSeq2Seq(12, 12, hidden_size=8, reverse_source=True)
    plain = common.TorchSeq2Seq(12, 12, hidden_size=8, reverse_source=False)
    plain.load_state_dict(model.state_dict())
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])                 # row 1 is padded
    by_hand = torch.tensor([[2, 7, 6, 5], [2, 9, 8, 0]])             # each row reversed within its length
    with torch.no_grad():
        keys, (h, c), mask = model.encode(src)
        keys_ref, (h_ref, c_ref), _ = plain.encode(by_hand)
    assert torch.equal(mask, src != 0)
    np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(keys.numpy(), keys_ref.numpy(), rtol=0, atol=1e-6)


@needs_torch
def test_yardstick_gives_a_padded_row_the_state_it_has_alone():
    torch = common.load_torch()
    torch.manual_seed(0)
    model = common.TorchSeq2Seq(12, 12, hidden_size=8, attention="luong", peeky=True)
    with torch.no_grad():
        _, (h_batch, _), _ = model.encode(torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]]))
        _, (h_alone, _), _ = model.encode(torch.tensor([[8, 9, 2]]))
    np.testing.assert_allclose(h_batch[0, 1].numpy(), h_alone[0, 0].numpy(), rtol=0, atol=1e-6)
