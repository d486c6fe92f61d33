# lstm_np — the two commands: `make train` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test ci notebooks train g2p bench bench-accuracy gradcheck clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,mpi]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# CI: the same suite with torch installed, so the comparisons with PyTorch run instead of skipping. Pinned to
# the CPU build: a bare `torch` or a range can make pip fetch a multi-GB CUDA build.
TORCH       := torch==2.13.0
TORCH_STAMP := $(VENV)/.torch-installed

$(TORCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet "$(TORCH)"
	touch $(TORCH_STAMP)

ci: $(TORCH_STAMP)
	$(PY) -c "import torch; print('torch', torch.__version__)"
	$(PY) -m pytest -q tests

# Re-execute every notebook in place, for when a change to lstm_np changes what they print (the tests compare
# each notebook's saved outputs with a fresh run: tests/notebook_pages.py). Commit the result.
notebooks: $(STAMP)
	$(PY) tests/notebook_pages.py notebooks/*.ipynb

# The main job: the addition task for 90 s (with its defaults it is at 99% or more within about a minute on a
# 2-core machine), then the sums a user types first, answered by the trained model.
EXAMPLES := 1+1 0+0 99+1 999+999 12+345 7+95

train: $(STAMP)
	$(PY) -m lstm_np train --task addition --max-seconds 90 --out runs/addition --overwrite --metrics-out runs/addition-metrics.json
	@echo "hand-typed sums (source, then the model's answer):"
	@$(PY) -m lstm_np translate --checkpoint runs/addition --with-source $(EXAMPLES)

# English pronunciation (CMUdict G2P, data/README.md): the README's recipe for G2P_SECONDS of training on the
# training words (5% of them, at most 2000, held out for validation), scored on the 12,000 test words; then test
# WER and PER and the pronunciations of words a user might type. Checkpoint in runs/g2p/, metrics in runs/g2p.json.
# G2P_WORKERS: processes training the model together (docs/design.md §9), every core when the MPI extra is
# installed (`make test` installs it), else 1.
G2P_SECONDS ?= 3600
G2P_THREADS ?= 1
G2P_WORKERS ?= $(shell $(PY) -c "import importlib.util as u, os; print(os.cpu_count() if u.find_spec('mpi4py') else 1)" 2>/dev/null || echo 1)
G2P_RECIPE  := --src-tokens char --tgt-tokens word --bidirectional --attention luong --peephole none \
               --hidden-size 256 --embed-size 64 --embed-dropout 0.1 --output-dropout 0.1 --batch-size 64 --lr 1e-2 \
               --valid-size 2000 --beam-size 5
G2P_WORDS   := PYTHON NUMPY TENSORFLOW CHATBOT LSTM SMARTPHONE BLOCKCHAIN SELFIE

g2p: $(STAMP)
	@echo "training on $(G2P_WORKERS) worker process(es), $(G2P_THREADS) BLAS thread(s) each$(if $(filter 1,$(G2P_WORKERS)), (pip install \"lstm_np[mpi]\" to use every core),)"
	$(PY) -m lstm_np train --train data/cmudict-g2p-train.tsv --test data/cmudict-g2p-test.tsv $(G2P_RECIPE) \
		--max-seconds $(G2P_SECONDS) --threads $(G2P_THREADS) --workers $(G2P_WORKERS) --out runs/g2p --overwrite \
		--metrics-out runs/g2p.json
	@$(PY) -c "import json; m = json.load(open('runs/g2p.json')); print(f\"test WER {100 * (1 - m['test_exact_match']):.2f}% | PER {100 * m['test_token_error_rate']:.2f}% | {m['test_examples']} words, beam {m['beam_size']}, {m['steps']} steps in {m['train_seconds']:.0f} s, {m['workers']} worker(s) x {$(G2P_THREADS)} BLAS thread(s)\")"
	@echo "pronunciations (word, then the model's phones):"
	@$(PY) -m lstm_np translate --checkpoint runs/g2p --beam-size 5 --with-source $(G2P_WORDS)

gradcheck: $(STAMP)
	$(PY) -m lstm_np.gradcheck

bench: $(STAMP)
	$(PY) benchmarks/bench_lstm.py --threads 1
	$(PY) benchmarks/bench_seq2seq.py
	$(PY) benchmarks/bench_memory.py

# Held-out exact match at 30/60/120 s beside PyTorch, and the steps each peephole variant needs (about 2 hours).
bench-accuracy: $(STAMP)
	$(PY) benchmarks/bench_time_to_accuracy.py
	$(PY) benchmarks/bench_time_to_accuracy.py --only dlfs2-date,dlfs2-addition,number-words,reverse --no-budgets --steps-table
	$(PY) benchmarks/bench_tasks.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
