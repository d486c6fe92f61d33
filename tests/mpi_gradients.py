"""Run by tests/test_parallel.py under `mpiexec -n 2`: the summed gradient of every step of a 2-rank run (each
rank holds the sum for its share of the parameters; the shares put together) against the gradient of the same
step trained by rank 0 alone; prints one JSON line (rank 0)."""
import json
import sys

import numpy as np
from mpi4py import MPI

from lstm_np.parallel import MPIWorld, Solo
from lstm_np.train import Trainer, TrainConfig


def gradients_per_step(world, folder):
    cfg = TrainConfig(train=f"{folder}/A.tsv", hidden_size=8, embed_size=8, batch_size=19, layers=2,
                      bidirectional=True, dropout=0.2, embed_dropout=0.1, output_dropout=0.1, dtype="float64",
                      steps=12, eval_every=6, out=None, attention="luong")
    trainer = Trainer(cfg, log=lambda line: None, handle_signals=False, world=world)
    grads, real_step = [], trainer.opt.step

    def step(pieces):   # the gradient each step applies, summed over the ranks and clipped: of the rank's share
        grads.append(np.concatenate([g.ravel() for _, _, g in trainer.model.named_parameters()]))
        real_step(pieces)
    trainer.opt.step = step
    trainer.run()
    return grads, len(trainer.train_src)


comm = MPI.COMM_WORLD
world = MPIWorld(comm)
shares, n_pairs = gradients_per_step(world, sys.argv[1])
bounds = world.share_bounds                 # rank r's share: elements bounds[r] .. bounds[r + 1]
shares = comm.gather(shares, root=0)
if comm.rank == 0:
    together = [np.concatenate([shares[r][k][bounds[r]:bounds[r + 1]] for r in range(comm.size)])
                for k in range(len(shares[0]))]
    alone, _ = gradients_per_step(Solo(), sys.argv[1])
    # 58 pairs: 4 batches an epoch, 3 of 19 rows (shares of 9 and 10) and one of 1 row, fewer than the ranks
    # (computed by both, counted once); the 12 steps take 3 epochs
    assert n_pairs == 58, n_pairs
    diff = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(together, alone))
    print(json.dumps({"steps": len(together), "ranks": comm.size, "max_relative_difference": diff,
                      "identical": all(np.array_equal(a, b) for a, b in zip(together, alone))}))
