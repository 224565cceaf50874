# The README's commands. Everything builds in release (tests too) so the dependency graph is
# compiled once for reproduce, test and bench.
CARGO ?= cargo
RUN_DIR ?= runs/reproduce

.PHONY: setup build reproduce test bench lint

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release --workspace

reproduce: build
	./target/release/paperworks reproduce --run-dir $(RUN_DIR)
	@echo "report: $(RUN_DIR)/report.html (and report.md)"

test: setup
	$(CARGO) test --release --workspace

bench: setup
	$(CARGO) bench -p pw-nn --bench kernels

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
