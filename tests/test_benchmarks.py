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


@needs_torch
def test_bidirectional_yardstick_starts_its_decoder_from_both_directions_final_states():
    """[fwd ; bwd] as lstm_np's bridge: the forward half is the forward output at each row's last real position,
    the backward half the backward output at position 0; the decoder and attention get 2H units."""
    torch = common.load_torch()
    torch.manual_seed(0)
    H = 8
    model = common.TorchSeq2Seq(12, 12, hidden_size=H, attention="luong", peeky=True, bidirectional=True)
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    with torch.no_grad():
        keys, (h, c), _ = model.encode(src)
        loss = model(src, torch.tensor([[4, 5, 2], [6, 2, 0]]))
    assert h.shape == c.shape == (1, 2, 2 * H) and keys.shape == (4, 2, 2 * H)
    last = torch.tensor([3, 2])                                       # each row's last real position
    np.testing.assert_allclose(h[0, :, :H].numpy(), keys[last, torch.arange(2), :H].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(h[0, :, H:].numpy(), keys[0, :, H:].numpy(), rtol=0, atol=1e-6)
    assert model.decoder.hidden_size == 2 * H and np.isfinite(loss.item())


def test_bench_g2p_trains_lstm_np_with_make_g2ps_recipe_and_letters_in_phones_out():
    """bench_g2p reads the recipe from the Makefile (its one written copy), and lstm-np's parser takes it."""
    import bench_g2p
    from lstm_np.cli import build_parser
    args = build_parser().parse_args(["train", *bench_g2p.DATA_FLAGS, *bench_g2p.RECIPE])
    assert (args.src_tokens, args.tgt_tokens, args.bidirectional, args.attention) == ("char", "word", True, "luong")
    assert args.beam_size == 5 and "--max-seconds" not in bench_g2p.RECIPE
    torch_side = bench_g2p.TORCH          # PyTorch's model takes the recipe's sizes and dropout
    assert (torch_side["hidden_size"], torch_side["embed_size"], torch_side["batch_size"]) == \
        (args.hidden_size, args.embed_size, args.batch_size)
    assert (torch_side["embed_dropout"], torch_side["output_dropout"]) == (args.embed_dropout, args.output_dropout)
    assert torch_side["average_decay"] == getattr(args, "average_decay", 0.0)      # its weight average too
    assert torch_side["peeky"] == getattr(args, "peeky", True)                     # and the decoder's input
    assert torch_side["label_smoothing"] == getattr(args, "label_smoothing", 0.0)


@needs_torch
def test_the_pytorch_yardstick_averages_its_weights_as_average_decay_does(tmp_path):
    """d = 0.25 after 2 steps: â = (0.25 p_1 + p_2) / 1.25, p_t the weights after step t (runs of 1 and of 2 steps from
    the same seed, counted by a clock that ticks once per step)."""
    from helpers import make_data
    make_data(tmp_path)
    common.load_torch()
    data = common.torch_data(["--train", str(tmp_path / "A.tsv")])

    def run(steps):
        ticks = iter(range(10 ** 6))
        model, done, _ = common.train_torch(data, steps + 1, lr=0.05, batch_size=8, hidden_size=8, embed_size=8,
                                            clock=lambda: next(ticks), average_decay=0.25)
        assert done == steps
        return model

    one, two = run(1), run(2)
    for name, p2 in two.named_parameters():
        p1 = dict(one.named_parameters())[name]
        assert not np.allclose(p1.detach().numpy(), p2.detach().numpy()), name
        np.testing.assert_allclose(two.averaged[name].numpy(), ((0.25 * p1 + p2) / 1.25).detach().numpy(), rtol=1e-6,
                                   atol=1e-7, err_msg=name)
