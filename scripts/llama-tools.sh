#!/usr/bin/env bash
# Builds llama.cpp's own benchmark tools, llama-bench and llama-batched-bench, against the
# llama.cpp tree that llama-cpp-sys-2 bundles and with the GGML options of the crate's own build
# (read from its CMakeCache.txt under target/release/build), so `make bench` compares our engine
# with llama.cpp's tools on the same ggml, compiled the same way.
#
# The crate ships llama.cpp without the tools' sources. They come from the llama-cpp-python sdist
# that `scripts/setup.sh --peers` fetches from PyPI (pinned by sha256 in
# scripts/llama-tools-requirements.txt); its vendored llama.cpp is a slightly different version,
# so only the two tools' own files are taken from it, and the build fails loudly if their API
# use no longer matches the bundled tree.
#
# Usage: scripts/llama-tools.sh [OUT]   (default target/llama-tools; the binaries land in OUT/bin)
#        scripts/llama-tools.sh --fetch (what setup.sh --peers runs: download and verify the sdist)
# Prints the bin folder on success. Rebuilds only when the sdist, the tree or the options change.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache="${PAPERWORKS_CACHE:-$HOME/.cache/paperworks}/wheels"
reqs="$here/scripts/llama-tools-requirements.txt"

say() { printf 'llama-tools: %s\n' "$*" >&2; }
die() { printf 'llama-tools: error: %s\n' "$*" >&2; exit 1; }

req=$(grep -v '^#' "$reqs" | grep -m1 '==' | cut -d' ' -f1)
name=${req%%==*}; ver=${req##*==}
want=$(sed -n "s/^$name==$ver --hash=sha256:\([0-9a-f]*\).*/\1/p" "$reqs")
sdist="$cache/$(printf '%s' "$name" | tr '-' '_')-$ver.tar.gz"
verified() { [ -f "$sdist" ] && [ "$(sha256sum "$sdist" | cut -d' ' -f1)" = "$want" ]; }

if [ "${1:-}" = --fetch ]; then
  if verified; then
    say "ok      $(basename "$sdist")"
  else
    say "downloading $req (the sources of llama-bench and llama-batched-bench, about 75 MB)"
    mkdir -p "$cache" && rm -f "$sdist"
    pip=$(command -v pip || command -v pip3) || die "no pip on PATH"
    "$pip" download --no-deps --no-binary "$name" --disable-pip-version-check -q \
      --require-hashes -r "$reqs" -d "$cache" >&2 || die "pip download -r $reqs failed"
    verified || die "$sdist does not match its sha256 in $reqs"
    say "fetched $(basename "$sdist")"
  fi
  exit 0
fi
out=${1:-$here/target/llama-tools}
[ -f "$sdist" ] || die "$sdist is missing (scripts/setup.sh --peers fetches it)"
verified || die "$sdist does not match its sha256 in $reqs"

sys_ver=$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$here/Cargo.lock")
[ -n "$sys_ver" ] || die "no llama-cpp-sys-2 in $here/Cargo.lock"
tree=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$sys_ver"/llama.cpp 2>/dev/null | head -n 1 || true)
[ -n "$tree" ] || die "llama-cpp-sys-2 $sys_ver is not in the cargo registry (run cargo build --release first)"
target_dir=${CARGO_TARGET_DIR:-$here/target}
crate_cache=$(ls -t "$target_dir"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null | head -n 1 || true)
[ -n "$crate_cache" ] || die "no llama-cpp-sys-2 build under $target_dir/release/build (run cargo build --release first)"

# The crate's compiler flags and every GGML option it was configured with.
opts=()
while IFS= read -r line; do
  opts+=("-D$line")
done < <(grep -E '^(GGML_[A-Z0-9_]+:BOOL|CMAKE_C_FLAGS:STRING|CMAKE_CXX_FLAGS:STRING|CMAKE_BUILD_TYPE:STRING)=' "$crate_cache")

stamp_now=$(printf '%s\n' "$want" "$tree" "${opts[@]}" | sha256sum | cut -d' ' -f1)
if [ -x "$out/bin/llama-bench" ] && [ -x "$out/bin/llama-batched-bench" ] \
  && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp_now" ]; then
  printf '%s\n' "$out/bin"
  exit 0
fi

say "building llama-bench and llama-batched-bench (llama.cpp of llama-cpp-sys-2 $sys_ver, tools from $name $ver)"
rm -rf "$out" && mkdir -p "$out"
cp -r "$tree" "$out/src"
# Writable copy: cp keeps the registry's read-only modes on some setups.
chmod -R u+w "$out/src"
for t in llama-bench batched-bench; do
  rm -rf "$out/src/tools/$t"
  tar -xzf "$sdist" -C "$out" "$name-$ver/vendor/llama.cpp/tools/$t" 2>/dev/null \
    || tar -xzf "$sdist" -C "$out" "$(printf '%s' "$name" | tr '-' '_')-$ver/vendor/llama.cpp/tools/$t" \
    || die "$sdist has no vendor/llama.cpp/tools/$t"
  mv "$out"/*-"$ver"/vendor/llama.cpp/tools/"$t" "$out/src/tools/$t"
done
rm -rf "$out"/*-"$ver"
printf 'add_subdirectory(batched-bench)\nadd_subdirectory(llama-bench)\n' >"$out/src/tools/CMakeLists.txt"

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$out/src" -B "$out/build" -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_COMMON=ON \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_MTMD=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  "${opts[@]}" >"$out/configure.log" 2>&1 \
  || die "cmake configure failed; see $out/configure.log"
cmake --build "$out/build" -j "$jobs" --target llama-bench llama-batched-bench >"$out/build.log" 2>&1 \
  || die "the build failed; see $out/build.log"
mkdir -p "$out/bin"
cp "$out/build/bin/llama-bench" "$out/build/bin/llama-batched-bench" "$out/bin/"
printf '%s' "$stamp_now" >"$out/.stamp"
say "built $out/bin/llama-bench and $out/bin/llama-batched-bench"
printf '%s\n' "$out/bin"
