"""PyTorch peer of `cargo bench -p pw-nn --bench decode` "engine/sample": GLoRe's student shape
(the pre-norm causal transformer of `transformer_peer.py` at vocabulary 128, d_model 128, 4
heads, 4 layers, 256 positions) samples 8 continuations of 32 tokens for each of 48 prompts of
50 tokens, at temperature 1 without top-p, as `pw_nn::decode::Decoder::sample` does: each
prompt is evaluated once, its key/value cache copied to its 8 samples, and all 384 sequences
decode together, one token per step, with a key/value cache allocated once. Prints tokens/s (new tokens).

usage: python decode_peer.py [--reps N]   (needs torch; all cores, as the Rust bench)
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchfig import figure, peer_device, peer_tag, timed  # noqa: E402

import torch
import torch.nn.functional as F

from transformer_peer import Block, CausalLm  # noqa: E402

V, D, H, L, MAX_LEN = 128, 128, 4, 4, 256
PROMPTS, PROMPT_LEN, SAMPLES, NEW = 48, 50, 8, 32


class CachedBlock(Block):
    """transformer_peer's block reading and writing a key/value cache."""

    def forward(self, x, start, cache):
        """x [b, t, D] at positions start.. ; cache (k, v) [b, H, MAX_LEN, D/H], written in place
        at those positions (a prefill without a cache returns its keys and values instead)."""
        b, t, d = x.shape
        y = self.ln1(x)
        heads = lambda lin: lin(y).view(b, t, self.h, d // self.h).transpose(1, 2)
        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            cache = (k, v)
        else:
            cache[0][:, :, start : start + t] = k
            cache[1][:, :, start : start + t] = v
            # one new token sees every cached position up to its own
            a = F.scaled_dot_product_attention(
                q, cache[0][:, :, : start + t], cache[1][:, :, : start + t]
            )
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)))), cache


class CachedLm(CausalLm):
    def __init__(self):
        super().__init__(V, D, H, L, MAX_LEN, block=CachedBlock)

    def forward(self, tokens, start, caches):
        """The last position's logits and every block's grown cache."""
        x = self.tok(tokens) + self.pos(torch.arange(start, start + tokens.shape[1]))
        new = []
        for blk, c in zip(self.blocks, caches):
            x, c = blk(x, start, c)
            new.append(c)
        return self.head(self.ln_f(x[:, -1])), new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    device, on = peer_device()
    torch.set_default_device(device)
    torch.manual_seed(0)
    tag = peer_tag(device)
    model = CachedLm().eval()
    prompts = torch.tensor(
        [[(i * 7 + j * 3) % 120 + 7 for j in range(PROMPT_LEN)] for i in range(PROMPTS)]
    )

    @torch.inference_mode()
    def sample():
        logits, caches = model(prompts, 0, [None] * L)
        # each prompt's cache and last logits, copied to its samples, in caches allocated once
        def grown(t):
            c = torch.empty(PROMPTS * SAMPLES, H, PROMPT_LEN + NEW, D // H)
            c[:, :, :PROMPT_LEN] = t.repeat_interleave(SAMPLES, 0)
            return c

        caches = [(grown(k), grown(v)) for k, v in caches]
        logits = logits.repeat_interleave(SAMPLES, 0)
        out = []
        for i in range(NEW):
            tok = torch.multinomial(F.softmax(logits, -1), 1)
            out.append(tok)
            if i + 1 < NEW:
                logits, caches = model(tok, PROMPT_LEN + i, caches)
        return torch.cat(out, 1)

    dt = timed(sample, a.reps, device, warmup=1)
    n = PROMPTS * SAMPLES * NEW
    print(f"{tag}: sampler d{D} L{L}, {PROMPTS} prompts x {SAMPLES} x {NEW} tokens: {1000 * dt:.1f} ms, {n / dt:.0f} tokens/s")
    figure(f"KV-cached sampler d{D} L{L}, {PROMPTS} prompts x {SAMPLES} x {NEW} tokens{on}", n / dt, "tokens/s", f"pytorch {torch.__version__}")


if __name__ == "__main__":
    main()
