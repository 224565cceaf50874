# The README's commands. Everything builds in release (tests too) so the dependency graph is
# compiled once for reproduce, test and bench.
SHELL := /bin/bash
CARGO ?= cargo
RUN_DIR ?= runs/reproduce
# Python with torch for the PyTorch peers of `make bench` (skipped with a reason when absent):
# `scripts/setup.sh --peers` installs torch into .venv-peers.
PEER_PYTHON ?= $(if $(wildcard .venv-peers/bin/python),.venv-peers/bin/python,python3)
PEERS := crates/nn/benches/transformer_peer.py crates/pdiff/benches/pdiff_peer.py \
	crates/videoprism/benches/videoprism_peer.py

.PHONY: setup build reproduce test bench lint

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --workspace

reproduce: build
	./target/release/paperworks reproduce --run-dir $(RUN_DIR)

# The last line is a plain "tests: N passed, N failed" over every test binary, so a reader (or
# CI) does not mistake cargo's final doc-test line ("0 passed") for the whole run.
test: setup
	@mkdir -p target
	set -o pipefail; $(CARGO) test --release --workspace --no-fail-fast 2>&1 | tee target/test-output.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.log

# Every bench and peer appends its headline figures to $(FIGURES); the table of ratios (ours /
# peer) is printed at the end.
FIGURES := $(CURDIR)/target/bench-figures.jsonl

bench: export PW_BENCH_FIGURES = $(FIGURES)
bench: setup
	@mkdir -p target && rm -f $(FIGURES)
	$(CARGO) bench -p pw-nn --bench kernels
	$(CARGO) bench -p pw-pdiff --bench pdiff
	$(CARGO) bench -p pw-llm --bench sampler
	$(CARGO) bench -p pw-nn --bench decode
	$(CARGO) bench -p pw-videoprism --bench videoprism
	$(CARGO) bench -p pw-comments --bench density
	@if $(PEER_PYTHON) -c 'import torch' 2>/dev/null; then \
		for peer in $(PEERS); do $(PEER_PYTHON) $$peer || exit 1; done; \
	else echo "skipped the PyTorch peers ($(PEERS)): $(PEER_PYTHON) has no torch (set PEER_PYTHON, or run scripts/setup.sh --peers)"; fi
	$(CARGO) build --release --workspace
	./target/release/paperworks llm bench --quiet
	@echo; echo "ratios of the headline figures (higher is better; $(FIGURES)):"
	@python3 scripts/benchfig.py $(FIGURES)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
