#!/usr/bin/env python3
"""Soak check of `paperworks serve` against hostile clients, on loopback only (standard library).

Phase 1: a bounded slowloris (200 connections for 60 s, each sending a header byte every 2 s and
reconnecting when the server closes it) while /health is polled twice a second.
Phase 2: a flood of 1,000 chat requests from 32 client threads, every second one a long
request whose client disconnects after 0.2 s without reading the answer.
Then: how long until no sequence is pending, the server's resident memory (idle before, peak,
after), and how long SIGTERM takes. Every loop is bounded in count and time.

Usage: python3 scripts/serve_soak.py [BINARY] [--seconds 60] [--requests 1000]
"""

import argparse
import http.client
import json
import signal
import socket
import subprocess
import threading
import time


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


def health(port):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/health")
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    return r.status, body, time.monotonic() - t0


def chat(port, i, long_one):
    body = json.dumps({
        "messages": [{"role": "user", "content": f"Tell a long story about the number {i}."}],
        "max_tokens": 300 if long_one else 8,
        "temperature": 0.7,
        "seed": i,
    }).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    if long_one:
        time.sleep(0.2)
        s.close()  # the client goes away without reading
        return "left"
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "closed"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="./target/release/paperworks")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--requests", type=int, default=1000)
    a = ap.parse_args()

    proc = subprocess.Popen(
        [a.binary, "--quiet", "--threads", "2", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    port = int(line.split("127.0.0.1:")[1].split("/")[0])
    time.sleep(1)
    idle = rss_kib(proc.pid)
    print(f"serve pid {proc.pid} on port {port}; idle RSS {idle['VmRSS'] / 1024:.0f} MiB")

    # Phase 1: slowloris
    stop = time.monotonic() + a.seconds
    closed_by_server = [0]
    lock = threading.Lock()

    def slow():
        while time.monotonic() < stop:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                while time.monotonic() < stop:
                    time.sleep(2)
                    s.sendall(b"X-Slow: a\r\n")
            except OSError:
                with lock:
                    closed_by_server[0] += 1
                time.sleep(0.1)

    threads = [threading.Thread(target=slow) for _ in range(200)]
    for t in threads:
        t.start()
    worst, polls, bad = 0.0, 0, 0
    while time.monotonic() < stop:
        try:
            status, _, took = health(port)
            worst = max(worst, took)
            bad += status != 200
        except OSError:
            bad += 1
        polls += 1
        time.sleep(0.5)
    for t in threads:
        t.join()
    print(f"slowloris: 200 connections for {a.seconds:.0f} s; /health answered {polls - bad} of "
          f"{polls} polls, slowest {worst * 1e3:.0f} ms; the server closed slow connections "
          f"{closed_by_server[0]} times; RSS now {rss_kib(proc.pid)['VmRSS'] / 1024:.0f} MiB")

    # Phase 2: flood with disconnecting clients
    nxt = [0]
    outcomes = {}

    def client():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.requests:
                return
            try:
                o = chat(port, i, i % 2 == 1)
            except OSError as e:
                o = f"error {e.__class__.__name__}"
            with lock:
                outcomes[o] = outcomes.get(o, 0) + 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flood_s = time.monotonic() - t0
    t1 = time.monotonic()
    while True:
        _, h, _ = health(port)
        if h["pending"] == 0 or time.monotonic() - t1 > 30:
            break
        time.sleep(0.05)
    drained = time.monotonic() - t1
    mem = rss_kib(proc.pid)
    print(f"flood: {a.requests} requests from 32 clients in {flood_s:.1f} s: {outcomes}; "
          f"pending 0 {drained * 1e3:.0f} ms after the last client; served {h['served']}, "
          f"refused {h['refused']}")
    print(f"memory: idle {idle['VmRSS'] / 1024:.0f} MiB, peak {mem['VmHWM'] / 1024:.0f} MiB, "
          f"after {mem['VmRSS'] / 1024:.0f} MiB")

    t2 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    print(f"SIGTERM: exited {rc} after {(time.monotonic() - t2) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
