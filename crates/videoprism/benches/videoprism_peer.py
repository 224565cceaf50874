"""PyTorch peer of `cargo bench -p pw-videoprism` "train/encoder step": the same factorized
ViViT (patch 8, width 64, 2 spatial + 2 temporal pre-LN layers, 4 heads, MLP 128, exact GELU,
LayerNorm eps 1e-6, attention logits capped by 50 tanh(x / 50)) on a batch of 32 clips of
8 x 32 x 32 x 3, loss = mean square of the tokens, one AdamW step. Prints ms per step.

usage: python videoprism_peer.py [--steps N]   (needs torch; all cores, as the Rust bench;
PW_DEVICE=cuda runs it on the GPU, as `make bench-gpu GPU_DEVICE=cuda`)
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from benchfig import figure, peer_device, peer_tag, timed  # noqa: E402

import torch
import torch.nn as nn
import torch.nn.functional as F

D, H, MLP, P, T, S, B, CAP = 64, 4, 128, 8, 8, 32, 32, 50.0


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D, eps=1e-6)
        self.q, self.k, self.v, self.post = (nn.Linear(D, D) for _ in range(4))
        self.ln2 = nn.LayerNorm(D, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(D, MLP), nn.Linear(MLP, D)

    def forward(self, x):
        b, t, d = x.shape
        y = self.ln1(x)
        heads = lambda lin: lin(y).view(b, t, H, d // H).transpose(1, 2)
        q, k, v = heads(self.q), heads(self.k), heads(self.v)
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // H)
        logits = CAP * torch.tanh(logits / CAP)
        a = torch.softmax(logits, dim=-1) @ v
        x = x + self.post(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        g = S // P
        self.patch = nn.Linear(P * P * 3, D)
        self.spatial_pos = nn.Parameter(torch.randn(g * g, D) * 0.02)
        self.temporal_pos = nn.Parameter(torch.randn(T, D) * 0.02)
        self.spatial = nn.ModuleList(Block() for _ in range(2))
        self.temporal = nn.ModuleList(Block() for _ in range(2))
        self.sln, self.tln = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)

    def forward(self, video):
        b, t, h, w, c = video.shape
        gh, gw = h // P, w // P
        x = video.reshape(b * t, gh, P, gw, P * c).transpose(2, 3).reshape(b * t, gh * gw, P * P * c)
        x = self.patch(x) + self.spatial_pos
        for blk in self.spatial:
            x = blk(x)
        x = self.sln(x)
        n = gh * gw
        x = x.reshape(b, t, n, D).transpose(1, 2).reshape(b * n, t, D) + self.temporal_pos
        for blk in self.temporal:
            x = blk(x)
        x = self.tln(x)
        return x.reshape(b, n, t, D).transpose(1, 2).reshape(b, t * n, D)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    device, on = peer_device()
    torch.set_default_device(device)
    torch.manual_seed(1)
    model = Encoder()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    video = torch.rand(B, T, S, S, 3)

    def step():
        opt.zero_grad(set_to_none=True)
        y = model(video)
        loss = (y * y).mean()
        loss.backward()
        opt.step()

    dt = timed(step, a.steps, device)
    print(f"{peer_tag(device)}: encoder step, batch {B} x {T} x {S} x {S}: {1000 * dt:.1f} ms/step, {B / dt:.1f} clips/s")
    figure(f"ViViT encoder step b{B} {T}x{S}x{S}{on}", B / dt, "clips/s", f"pytorch {torch.__version__}")


if __name__ == "__main__":
    main()
