# The README's commands. Everything builds in release (tests too) so the dependency graph is
# compiled once for reproduce, test and bench.
SHELL := /bin/bash
CARGO ?= cargo
RUN_DIR ?= runs/reproduce
# Python with torch for the PyTorch peers of `make bench` (skipped with a reason when absent):
# `scripts/setup.sh --peers` installs torch into .venv-peers.
PEER_PYTHON ?= $(if $(wildcard .venv-peers/bin/python),.venv-peers/bin/python,python3)
TRAIN_PEERS := crates/nn/benches/transformer_peer.py crates/pdiff/benches/pdiff_peer.py \
	crates/videoprism/benches/videoprism_peer.py
PEERS := $(TRAIN_PEERS) crates/nn/benches/decode_peer.py

.PHONY: setup build reproduce test bench lint setup-gpu build-gpu test-gpu bench-gpu build-cuda

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
QWEN := assets/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf

bench: export PW_BENCH_FIGURES = $(FIGURES)
bench: setup
	@mkdir -p target && rm -f $(FIGURES)
	$(CARGO) bench -p pw-nn --bench kernels
	$(CARGO) bench -p pw-pdiff --bench pdiff
	$(CARGO) bench -p pw-llm --bench sampler
	$(CARGO) bench -p pw-nn --bench decode
	$(CARGO) bench -p pw-videoprism --bench videoprism
	$(CARGO) bench -p pw-videoprism --bench encoder_step
	$(CARGO) bench -p pw-comments --bench density
	@if $(PEER_PYTHON) -c 'import torch' 2>/dev/null; then \
		for peer in $(PEERS); do $(PEER_PYTHON) $$peer || exit 1; done; \
	else echo "skipped the PyTorch peers ($(PEERS)): $(PEER_PYTHON) has no torch (set PEER_PYTHON, or run scripts/setup.sh --peers)"; fi
	$(CARGO) build --release --workspace
	./target/release/paperworks llm bench --quiet --ignore-eos --out target/llm-bench.json
	@if bin=$$(scripts/llama-tools.sh); then python3 scripts/llama_peer.py target/llm-bench.json "$$bin"; \
	else echo "skipped llama.cpp's own tools (llama-bench, llama-batched-bench): see the line above"; fi
	@# The reproductions' own decoding: Qwen2.5-Coder-0.5B as Q8_0 (WeightFormat::BATCHED) at the
	@# 16 streams GLAN and MAD-Bench batch; skipped when setup left the model out
	@# (PAPERWORKS_SKIP_QWEN=1).
	@if [ -f $(QWEN) ]; then \
		./target/release/paperworks llm bench --quiet --ignore-eos --model $(QWEN) --weights q8_0 --streams 16 --tokens 96 --reps 1 \
			--out target/llm-bench-qwen.json && \
		if bin=$$(scripts/llama-tools.sh); then python3 scripts/llama_peer.py target/llm-bench-qwen.json "$$bin"; fi; \
	else echo "skipped the Qwen2.5-Coder-0.5B decode bench: $(QWEN) is missing"; fi
	CARGO=$(CARGO) bash scripts/http-bench.sh $(PEER_PYTHON)
	@echo; echo "ratios of the headline figures (higher is better; $(FIGURES)):"
	@python3 scripts/benchfig.py $(FIGURES)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------- the GPU build
# burn's LibTorch backend (`--device cuda[:N]`, `--device torch-cpu`), linked against the libtorch
# of the torch 2.9.0 wheel that `scripts/setup.sh --gpu` puts in .venv-peers. It builds into its
# own target directory (target/gpu) so the default binary stays as it is, and records that
# libtorch directory as the rpath, so target/gpu/release/paperworks runs without
# LD_LIBRARY_PATH. On a machine with a GPU: `make test-gpu GPU_DEVICE=cuda`.
GPU_DEVICE ?= torch-cpu
GPU_TARGET ?= $(CURDIR)/target/gpu
GPU_VENV := $(CURDIR)/.venv-peers
GPU_FEATURES := --features paperworks/torch
# LIBTORCH=DIR links another libtorch instead (DIR holds include/ and lib/, e.g. the torch/ folder
# of another torch wheel, such as the one a GPU machine already has): torch-sys's check for 2.9.0
# is then bypassed. tch 0.22's C++ wrapper compiles against torch 2.11.0's headers too.
ifdef LIBTORCH
TORCH_LIB = $(LIBTORCH)/lib
TORCH_ENV = LIBTORCH=$(LIBTORCH) LIBTORCH_BYPASS_VERSION_CHECK=1
else
TORCH_LIB = $(shell $(GPU_VENV)/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
TORCH_ENV = LIBTORCH_USE_PYTORCH=1
endif
# torch-sys's torch_api.cpp and llama.cpp's mtmd-helper.cpp both compile stb_image's public
# functions (stbi_*) into their archives, so every binary that links both needs the linker to keep
# one copy: both are stb_image with the same public API, and each copy's state is static to its
# own object, so the copy kept is self-consistent.
GPU_ENV = VIRTUAL_ENV=$(GPU_VENV) PATH="$(GPU_VENV)/bin:$$PATH" $(TORCH_ENV) \
	CARGO_TARGET_DIR=$(GPU_TARGET) \
	RUSTFLAGS="-C link-arg=-Wl,-rpath,$(TORCH_LIB) -C link-arg=-Wl,--allow-multiple-definition"

setup-gpu:
	bash scripts/setup.sh --gpu

build-gpu: setup-gpu
	$(GPU_ENV) $(CARGO) build --release --workspace $(GPU_FEATURES)

# The training tests on the LibTorch backend's $(GPU_DEVICE): the two backends side by side
# (pw-nn's tests/backends.rs), then the ordinary training tests, the crates' tiny reproductions
# and that of all seven systems with PW_DEVICE=$(GPU_DEVICE), so they assert the same figures they
# assert on the default backend. Both cargo runs select the whole workspace, so they resolve
# features alike and compile the dependency graph once (a narrower -p set would build burn again).
test-gpu: setup-gpu
	@mkdir -p $(GPU_TARGET)
	set -o pipefail; ( \
	  $(GPU_ENV) PW_DEVICE=$(GPU_DEVICE) $(CARGO) test --release --workspace $(GPU_FEATURES) \
	    --test backends --test reversal --test diffusion --test autoencoder --test train \
	    --test reproduce_smoke --no-fail-fast && \
	  $(GPU_ENV) PW_DEVICE=$(GPU_DEVICE) $(CARGO) test --release --workspace $(GPU_FEATURES) --test cli \
	    -- --exact reproduce_smoke_writes_report_manifest_and_metrics \
	) 2>&1 | tee $(GPU_TARGET)/test-output.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' $(GPU_TARGET)/test-output.log

# The training benches on $(GPU_DEVICE), their figures appended beside the default backend's,
# then the PyTorch peers on the same device (PW_DEVICE names it for them too).
bench-gpu: export PW_BENCH_FIGURES = $(FIGURES)
bench-gpu: setup-gpu
	$(GPU_ENV) PW_DEVICE=$(GPU_DEVICE) $(CARGO) bench $(GPU_FEATURES) --workspace --bench kernels
	$(GPU_ENV) PW_DEVICE=$(GPU_DEVICE) $(CARGO) bench $(GPU_FEATURES) --workspace --bench pdiff
	$(GPU_ENV) PW_DEVICE=$(GPU_DEVICE) $(CARGO) bench $(GPU_FEATURES) --workspace --bench encoder_step
	for peer in $(TRAIN_PEERS); do PW_DEVICE=$(GPU_DEVICE) $(GPU_VENV)/bin/python $$peer || exit 1; done
	@python3 scripts/benchfig.py $(FIGURES)

# ---------------------------------------------------------------- llama.cpp on CUDA
# The embedded language models with `--gpu-layers N` on an NVIDIA GPU: llama.cpp's CUDA backend
# (the `cuda` feature), compiled by the CUDA 13.0 nvcc that `scripts/setup.sh --cuda` unzips
# from PyPI into assets/cuda-13.0 (NVIDIA driver >= 580 to run). It builds into target/cuda;
# llama.cpp's shared libraries sit next to the binary (rpath $ORIGIN), and the toolkit's lib
# directory (libcudart, libcublas) is the second rpath. CUDA_ARCHS: the GPUs to compile for, as
# CMAKE_CUDA_ARCHITECTURES ("90-real": H100/H200; "80-real;90-real" adds the A100). Each one
# costs about 20 minutes of compiling on 2 cores: a cold `make build-cuda` took 26 minutes.
CUDA_TK := $(CURDIR)/assets/cuda-13.0
CUDA_ARCHS ?= 90-real
CUDA_TARGET ?= $(CURDIR)/target/cuda

build-cuda:
	bash scripts/setup.sh --cuda
	@mkdir -p $(CUDA_TARGET)
	@# llama.cpp's libraries find each other, libcudart and libcublas through their own rpath:
	@# the binary's (a RUNPATH) does not reach the libraries its libraries need.
	@printf 'set(CMAKE_CUDA_COMPILER %s/bin/nvcc)\nset(CUDAToolkit_ROOT %s)\nset(CMAKE_CUDA_ARCHITECTURES "%s")\nset(CMAKE_INSTALL_RPATH "$$ORIGIN;%s/lib")\n' \
	  '$(CUDA_TK)' '$(CUDA_TK)' '$(CUDA_ARCHS)' '$(CUDA_TK)' >$(CUDA_TARGET)/toolchain.cmake
	@# llama-cpp-sys-2 links the unversioned library names (libllama.so -> libllama.so.0) next to
	@# the binary unless one exists, and fails on one that dangles: clear those first.
	@for l in $(CUDA_TARGET)/release/lib*.so $(CUDA_TARGET)/release/deps/lib*.so \
	  $(CUDA_TARGET)/release/examples/lib*.so; do [ -L "$$l" ] && [ ! -e "$$l" ] && rm -f "$$l"; done; true
	CARGO_TARGET_DIR=$(CUDA_TARGET) CMAKE_TOOLCHAIN_FILE=$(CUDA_TARGET)/toolchain.cmake \
	  CUDA_PATH=$(CUDA_TK) RUSTFLAGS='-C link-arg=-Wl,-rpath,$$ORIGIN -C link-arg=-Wl,-rpath,$(CUDA_TK)/lib' \
	  $(CARGO) build --release --workspace --features paperworks/cuda
	@# Those links are all it puts there; put the libraries they name (the SONAMEs the binary
	@# needs) beside them, from the newest build of llama.cpp.
	@lib=$$(ls -td $(CUDA_TARGET)/release/build/llama-cpp-sys-2-*/out/lib | head -n 1); \
	  for f in $$lib/lib*.so.0; do cp -Lf $$f $(CUDA_TARGET)/release/; cp -Lf $$f $(CUDA_TARGET)/release/deps/; done
	@echo "built $(CUDA_TARGET)/release/paperworks (llama.cpp on CUDA: --gpu-layers N)"
