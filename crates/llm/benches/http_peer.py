"""Peer of `cargo bench -p pw-llm --bench http`: the `openai` package's AsyncOpenAI sends the same
5,000 chat requests at concurrency 64 (an asyncio semaphore) to the same null server, one event
loop, retries off as ours. Prints requests/s and the process's CPU seconds.

usage: python http_peer.py BASE_URL   (needs openai; scripts/http-bench.sh runs it)
"""
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from benchfig import figure  # noqa: E402

import openai

REQUESTS, CONCURRENCY, REPS = 5_000, 64, 3


async def run(client, n):
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i):
        async with sem:
            r = await client.chat.completions.create(
                model="null",
                messages=[{"role": "user", "content": "Say hi."}],
                max_tokens=8,
                temperature=0.0,
            )
            assert r.choices[0].message.content is not None

    await asyncio.gather(*(one(i) for i in range(n)))


async def main(url):
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    await run(client, 500)
    rates = []
    for _ in range(REPS):
        t, cpu = time.perf_counter(), time.process_time()
        await run(client, REQUESTS)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"openai {openai.__version__} AsyncOpenAI: {REQUESTS} requests at concurrency {CONCURRENCY}: "
              f"{wall:.3f} s, {REQUESTS / wall:.0f} requests/s, {cpu:.2f} CPU s")
        rates.append(REQUESTS / wall)
    rates.sort()
    figure("HTTP client, 5,000 chat requests at concurrency 64", rates[len(rates) // 2], "requests/s",
           f"openai {openai.__version__} (python)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python http_peer.py BASE_URL")
    asyncio.run(main(sys.argv[1]))
