"""Headline figures of `make bench`, ours and the peers', collected in one JSON-lines file.

`make bench` sets PW_BENCH_FIGURES; every bench appends {"workload", "who", "value", "unit"}
(higher is better) with `figure()` here or `pw_core::samples::report_figure` in Rust, and
`python3 scripts/benchfig.py FILE` prints each workload's ratio, ours / peer.
"""
import json
import os
import sys
import time


def figure(workload, value, unit, who):
    """Appends one figure to $PW_BENCH_FIGURES; nothing when it is unset."""
    path = os.environ.get("PW_BENCH_FIGURES")
    if not path:
        return
    line = json.dumps({"workload": workload, "who": who, "value": value, "unit": unit})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def peer_device():
    """The torch device a PyTorch peer runs on and the suffix of its figure names, from PW_DEVICE
    as `pw_nn::on_selected_device` reads it: "cpu" (or unset) adds nothing, "torch-cpu" runs on
    the CPU as " on torch-cpu", "cuda" / "cuda:N" on that GPU as " on cuda:N". So a peer run with
    the same PW_DEVICE as `make bench-gpu` lands beside its figure in the ratio table."""
    d = os.environ.get("PW_DEVICE", "").strip() or "cpu"
    if d == "cpu":
        return "cpu", ""
    if d == "torch-cpu":
        return "cpu", " on torch-cpu"
    if d == "cuda":
        d = "cuda:0"
    if d.startswith("cuda:") and d[5:].isdigit():
        return d, f" on {d}"
    sys.exit(f"PW_DEVICE={d}: unknown device (expected one of: cpu, cuda, cuda:N, torch-cpu)")


def synchronize(device):
    """Waits for the work queued on `device` (CUDA runs asynchronously; the CPU needs nothing)."""
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize(device)


def timed(fn, steps, device, warmup=3):
    """Seconds per call of `fn` over `steps` calls after `warmup` ones, the device's queue
    drained before and after, as the Rust benches wait for theirs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def peer_tag(device):
    """How a peer names itself in its printed lines: torch's version, the device, and the CPU
    threads it ran on when that is the CPU."""
    import torch
    where = "cuda" if device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    return f"pytorch {torch.__version__} ({device}, {where})"


def ratios(lines):
    """(workload, unit, ours, [(peer, value, ours / value)]) per workload, in first-seen order.
    A workload measured more than once keeps its last figure per side."""
    by = {}
    for rec in lines:
        w = by.setdefault(rec["workload"], {"unit": rec["unit"], "ours": None, "peers": {}})
        if rec["unit"] != w["unit"]:
            raise ValueError(f"{rec['workload']}: unit {rec['unit']} after {w['unit']}")
        if rec["who"] == "paperworks":
            w["ours"] = rec["value"]
        else:
            w["peers"][rec["who"]] = rec["value"]
    out = []
    for name, w in by.items():
        peers = [(p, v, w["ours"] / v if w["ours"] is not None and v > 0 else None)
                 for p, v in w["peers"].items()]
        out.append((name, w["unit"], w["ours"], peers))
    return out


def table(rows):
    text = ["| workload | paperworks | peer | peer figure | ratio (ours / peer) |",
            "|---|---|---|---|---|"]
    for name, unit, ours, peers in rows:
        mine = "not run" if ours is None else f"{ours:,.1f} {unit}"
        if not peers:
            text.append(f"| {name} | {mine} | no peer ran | | |")
        for p, v, r in peers:
            ratio = "" if r is None else f"{r:.2f}x"
            text.append(f"| {name} | {mine} | {p} | {v:,.1f} {unit} | {ratio} |")
    return "\n".join(text)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 scripts/benchfig.py FIGURES.jsonl")
    path = sys.argv[1]
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        sys.exit(f"{path}: no figures (run `make bench`)")
    except (json.JSONDecodeError, KeyError) as e:
        sys.exit(f"{path}: not a figures file: {e}")
    print(table(ratios(lines)))


if __name__ == "__main__":
    main()
