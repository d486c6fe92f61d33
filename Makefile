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
# WER and PER and the pronunciations of words a user might type. The recipe trains G2P_MODELS models at once, one
# per core (seeds 0, 1, ..., the same held-out words), and tests their ensemble (ensemble.py): checkpoints in
# runs/g2p/model-<seed>/ (the first model's log of each round on the terminal, the others' beside them), metrics
# in runs/g2p.json. G2P_ROUNDS=R splits G2P_SECONDS into R rounds, one after the other, of G2P_MODELS models each
# (seeds continue across rounds), so that the ensemble has R x G2P_MODELS members in the same training time (each
# round also pays its models' start-up and final held-out test, and the ensemble's evaluation grows with its size).
G2P_SECONDS ?= 3600
G2P_ROUNDS  ?= 1
G2P_THREADS ?= 1
G2P_TRAIN   ?= data/cmudict-g2p-train.tsv
G2P_TEST    ?= data/cmudict-g2p-test.tsv
G2P_MODELS  ?= $(shell $(PY) -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)" 2>/dev/null || echo 1)
G2P_RECIPE  := --src-tokens char --tgt-tokens word --bidirectional --attention luong --no-peeky --peephole none \
               --hidden-size 256 --embed-size 64 --embed-dropout 0.2 --output-dropout 0.3 --average-decay 0.999 \
               --label-smoothing 0.1 --batch-size 64 --lr 1e-2 --valid-size 2000 --beam-size 5
G2P_WORDS   := PYTHON NUMPY TENSORFLOW CHATBOT LSTM SMARTPHONE BLOCKCHAIN SELFIE

g2p: $(STAMP)
	@case "$(G2P_ROUNDS)" in ''|*[!0-9]*|0*) echo "G2P_ROUNDS must be a whole number of rounds, 1 or more (got '$(G2P_ROUNDS)')" >&2; exit 2;; esac
	@case "$(G2P_SECONDS)" in ''|*[!0-9.]*|*.*.*|.) echo "G2P_SECONDS must be a number of seconds (got '$(G2P_SECONDS)')" >&2; exit 2;; esac
	@rm -rf runs/g2p runs/g2p.json runs/g2p-held-out.json && mkdir -p runs/g2p
	@pids=""; trap 'kill $$pids 2>/dev/null; wait; exit 130' INT TERM; seconds=$$(awk 'BEGIN { print $(G2P_SECONDS) / $(G2P_ROUNDS) }'); \
	echo "training $(G2P_ROUNDS) round(s) of $(G2P_MODELS) model(s) at once, $$seconds s each ($$(($(G2P_ROUNDS) * $(G2P_MODELS))) model(s) in all), one per core, $(G2P_THREADS) BLAS thread(s) each; then their ensemble is tested"; \
	for r in $$(seq 0 $$(($(G2P_ROUNDS) - 1))); do pids=""; \
	for j in $$(seq 0 $$(($(G2P_MODELS) - 1))); do i=$$((r * $(G2P_MODELS) + j)); \
		set -- $(PY) -m lstm_np train --train $(G2P_TRAIN) $(G2P_RECIPE) --max-seconds $$seconds \
			--threads $(G2P_THREADS) --seed $$i --split-seed 0 --out runs/g2p/model-$$i \
			--metrics-out runs/g2p/model-$$i.json; \
		if [ $$j = 0 ]; then "$$@" & else "$$@" > runs/g2p/model-$$i.log 2>&1 & fi; pids="$$pids $$!"; \
	done; status=0; i=$$((r * $(G2P_MODELS))); for p in $$pids; do \
		wait $$p || { status=$$?; [ $$i = $$((r * $(G2P_MODELS))) ] || { echo "model $$i failed; the end of runs/g2p/model-$$i.log:" >&2; \
			tail -n 5 runs/g2p/model-$$i.log >&2; }; }; i=$$((i + 1)); \
	done; [ $$status = 0 ] || exit $$status; \
	done
	@echo "the ensemble on the held-out words (greedy, as each model validated):"
	$(PY) -m lstm_np evaluate --checkpoint runs/g2p --held-out --threads $(G2P_MODELS) --metrics-out runs/g2p-held-out.json
	$(PY) -m lstm_np evaluate --checkpoint runs/g2p --test $(G2P_TEST) --beam-size 5 \
		--threads $(G2P_MODELS) --metrics-out runs/g2p.json
	@$(PY) -c "import json; m = json.load(open('runs/g2p.json')); runs = [json.load(open(f'runs/g2p/model-{i}.json')) for i in range(len(m['checkpoints']))]; print(f\"test WER {100 * (1 - m['test_exact_match']):.2f}% | PER {100 * m['test_token_error_rate']:.2f}% | {m['test_examples']} words, beam {m['beam_size']}, an ensemble of {len(runs)} model(s): {', '.join(str(r['steps']) for r in runs)} steps in {', '.join(format(r['train_seconds'], '.0f') for r in runs)} s, each on its own core with $(G2P_THREADS) BLAS thread(s)\")"
	@echo "pronunciations (word, then the ensemble's phones):"
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
