# jaxmusic: two commands on a fresh machine with only Python 3.10+:
#   make demo   sets up, generates the sample data, prepares TFRecords, trains and evaluates
#   make test   sets up and runs the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed$(if $(GPU),-gpu)
DATA   ?= data
PREP   ?= prepared
RUNS   ?= runs/demo
# Everything on a CPU machine; `make setup GPU=1` on an NVIDIA GPU machine adds JAX's CUDA build.
comma  := ,
EXTRAS := test,bench,viz,baselines,serve,stream,tf$(if $(GPU),$(comma)cuda)
SETS   := fma_genre_spectrograms fma_genre_spectrograms_beat multitask_dataset multitask_dataset_beat
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-distributed bench clean chromium

setup: $(STAMP)

# torch==2.13.0 (the benchmark baseline, "bench" extra) is a CPU build; see pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	$(PY) -m pip install --quiet --no-deps musicnn==0.1.0   # the .[pretrained] extra, without its TF1-era deps
	$(PY) -c 'from jaxmusic import workers; workers.compile_librosa_kernels()'   # numba's cache, written once
	touch $(STAMP)

$(DATA)/.done: $(STAMP)
	$(PY) -m jaxmusic sample-data $(DATA) --size small
	touch $@

$(PREP)/.done: $(DATA)/.done
	$(PY) -m jaxmusic prepare --source $(DATA) $(foreach s,$(SETS),--set $(s)) --out $(PREP) --shards 4
	touch $@

demo: $(PREP)/.done
	$(PY) -m jaxmusic inspect $(DATA)/fma_genre_spectrograms --plot $(RUNS)/class_histogram.png --quiet
	$(PY) -m jaxmusic show $(DATA) --out $(RUNS)/figures
	$(PY) -m jaxmusic train --config configs/demo/cnn_beat_mel.py --workdir $(RUNS)/cnn_beat_mel
	$(PY) -m jaxmusic train --config configs/demo/lstm_beat_fused.py --workdir $(RUNS)/lstm_beat_fused
	$(PY) -m jaxmusic train --config configs/demo/ast_beat_mel.py --workdir $(RUNS)/ast_beat_mel
	$(PY) -m jaxmusic train --config configs/demo/multitask_lstm_beat.py --workdir $(RUNS)/multitask_lstm_beat
	$(PY) -m jaxmusic baselines --source $(DATA) --set fma_genre_spectrograms_beat --workdir $(RUNS)/baselines --models svm,knn,logreg,rf,voting --seeds 3 --jobs 2 --quiet
	$(PY) -m jaxmusic embed --workdir $(RUNS)/cnn_beat_mel --workdir $(RUNS)/lstm_beat_fused --workdir $(RUNS)/ast_beat_mel --split test --methods pca,tsne --out $(RUNS)/latent_test.png
	$(PY) -m jaxmusic report $(RUNS) --out $(RUNS)/report.html
	@echo "report: $(RUNS)/report.html"

# The report is rendered in Debian's headless Chromium; install it when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	      || echo "could not install chromium: the browser test will skip"; \
	  else echo "chromium missing and cannot be installed here: the browser test will skip"; fi; }

test: $(STAMP) chromium
	$(PY) -m pytest -q -n 2 --dist loadfile tests

clean:
	rm -rf $(DATA) $(PREP) runs

test-distributed: $(STAMP)
	$(PY) -m pytest -q tests/test_distributed.py
