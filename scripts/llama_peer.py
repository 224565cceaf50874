"""llama.cpp's own benchmark tools beside `paperworks llm bench`: the peers of the decode rows of
`make bench`.

    python3 scripts/llama_peer.py BENCH_JSON BIN_DIR

BENCH_JSON is what `paperworks llm bench --out` wrote: the figures, the GGUF file the embedded
engine ran (after any weight conversion) and its thread count. BIN_DIR holds llama-bench and
llama-batched-bench (scripts/llama-tools.sh builds them against the llama.cpp that
llama-cpp-sys-2 bundles). Both tools run on that file and thread count, with their own defaults
otherwise, and their figures land in $PW_BENCH_FIGURES under the workload names ours use:

  - one stream: llama-bench's tg (as many tokens as ours asked per stream, after an empty
    prompt) and pp (as many prompt tokens as ours measured);
  - N streams: llama-batched-bench's S_TG, N sequences of as many tokens after a 32-token
    prompt, decoding together in one batch.

The tools decode without sampling or detokenizing; ours pays both (its sampler: about 15 us per
token), so parity here means the engine loses nothing to its own bookkeeping.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchfig import figure  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-5:])
        sys.exit(f"llama_peer: {os.path.basename(cmd[0])} failed (exit {p.returncode}):\n{tail}")
    return p.stdout


def llama_bench(bin_dir, path, threads, prompt_tokens, gen_tokens, reps):
    """(pp tokens/s, tg tokens/s) from llama-bench's JSON."""
    out = run([
        os.path.join(bin_dir, "llama-bench"), "-m", path, "-t", str(threads),
        "-p", str(prompt_tokens), "-n", str(gen_tokens), "-r", str(reps), "-o", "json",
    ])
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return pp, tg


def batched_bench(bin_dir, path, threads, streams, gen_tokens, prompt=32):
    """Aggregate generation tokens/s of `streams` sequences decoding together."""
    ctx = streams * (prompt + gen_tokens) + 64
    out = run([
        os.path.join(bin_dir, "llama-batched-bench"), "-m", path, "-t", str(threads),
        "-tb", str(threads), "-c", str(ctx), "-npp", str(prompt), "-ntg", str(gen_tokens),
        "-npl", str(streams), "--output-format", "jsonl",
    ])
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    if not rows:
        sys.exit("llama_peer: llama-batched-bench printed no JSON line")
    return rows[-1]["speed_tg"]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: python3 scripts/llama_peer.py BENCH_JSON BIN_DIR")
    bench_json, bin_dir = sys.argv[1], sys.argv[2]
    with open(bench_json, encoding="utf-8") as f:
        r = json.load(f)
    eng = r.get("engine")
    if not eng:
        print("skipped llama.cpp's tools: the bench ran against an HTTP endpoint, not a GGUF file")
        return
    path, threads, model = eng["path"], eng["threads"], r["model"]
    gen, streams, prompt = r["gen_tokens"], r["parallel"], r["prompt_tokens"]
    pp, tg = llama_bench(bin_dir, path, threads, prompt, gen, reps=3)
    tgn = batched_bench(bin_dir, path, threads, streams, gen)
    threads_s = f"{threads} thread{'s' if threads != 1 else ''}"
    who = f"llama.cpp tools ({threads_s})"
    print(f"peer: llama-bench on {os.path.basename(path)}, {threads_s}: "
          f"pp{prompt} {pp:.1f} tokens/s, tg{gen} {tg:.1f} tokens/s")
    print(f"peer: llama-batched-bench, {streams} streams x {gen} tokens: {tgn:.1f} tokens/s aggregate")
    figure(f"{model}: prompt processing, {prompt} tokens", pp, "tokens/s", who)
    figure(f"{model}: generation, 1 stream", tg, "tokens/s", who)
    figure(f"{model}: generation, {streams} streams", tgn, "tokens/s", who)


if __name__ == "__main__":
    main()
