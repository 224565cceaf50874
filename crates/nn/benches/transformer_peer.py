"""PyTorch peer of `cargo bench -p pw-nn --bench kernels` "transformer/train_step": the same
pre-norm causal transformer (vocabulary 128, learned positions, d_model 256, 4 heads, 4 layers,
MLP 4x with exact GELU, final LayerNorm, untied bias-free head) on a batch of 32 x 128 random
tokens, cross-entropy, one AdamW step (betas 0.9/0.95, weight decay 0.01, global-norm clip 1.0),
as `pw_nn::schedule::OptimConfig::default()`. Also f32 matmul 1024^3 and 2048^3. Prints tokens/s.

usage: python transformer_peer.py [--steps N]   (needs torch; all cores, as the Rust bench;
PW_DEVICE=cuda runs it on the GPU, as `make bench-gpu GPU_DEVICE=cuda`)
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from benchfig import figure, peer_device, peer_tag, timed  # noqa: E402

import torch
import torch.nn as nn
import torch.nn.functional as F

V, D, H, L, T, B = 128, 256, 4, 4, 128, 32


class Block(nn.Module):
    """Pre-norm block: causal self-attention of `h` heads, then an MLP 4x with exact GELU."""

    def __init__(self, d=D, h=H):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        y = self.ln1(x)
        heads = lambda lin: lin(y).view(b, t, self.h, d // self.h).transpose(1, 2)
        a = F.scaled_dot_product_attention(heads(self.q), heads(self.k), heads(self.v), is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CausalLm(nn.Module):
    """Token and learned position embeddings, `layers` blocks, a final LayerNorm and an untied
    bias-free head; `block` builds each block (decode_peer.py passes its cached one)."""

    def __init__(self, v=V, d=D, h=H, layers=L, max_len=T, block=Block):
        super().__init__()
        self.tok, self.pos = nn.Embedding(v, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(block(d, h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, v, bias=False)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    device, on = peer_device()
    torch.set_default_device(device)
    torch.manual_seed(0)
    tag = peer_tag(device)
    for n in (1024, 2048):
        x, y = torch.randn(n, n), torch.randn(n, n)
        dt = timed(lambda: x @ y, 10, device)
        print(f"{tag}: f32 matmul {n}^3: {2 * n**3 / dt / 1e9:.1f} GFLOP/s")
        figure(f"f32 matmul {n}^3{on}", 2 * n**3 / dt / 1e9, "GFLOP/s", f"pytorch {torch.__version__}")
    model = CausalLm()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
    tokens = torch.randint(0, V, (B, T + 1))
    x, y = tokens[:, :T], tokens[:, 1:].reshape(-1)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, V), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    dt = timed(step, a.steps, device)
    print(f"{tag}: transformer train step d{D} L{L} s{T} b{B}: {1000 * dt:.1f} ms/step, {B * T / dt:.0f} tokens/s")
    figure(f"transformer train step d{D} L{L} s{T} b{B}{on}", B * T / dt, "tokens/s", f"pytorch {torch.__version__}")


if __name__ == "__main__":
    main()
