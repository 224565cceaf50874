"""PyTorch peer of `cargo bench -p pw-pdiff --bench pdiff`: one AdamW training step (betas
0.9/0.95, weight decay 0.01, global-norm clip 1.0) of
- the parameter autoencoder at the quick size: 1,536 values, Conv1d blocks [32, 64, 128, 128]
  (kernel 5, stride 2, LeakyReLU 0.2) to a tanh latent of 4 channels, ConvTranspose1d blocks
  back, input noise 0.001 and latent noise 0.1, MSE; batch 50;
- the DDPM denoiser on latents [4, 96]: residual conv net (hidden 32, 4 blocks, kernel 3,
  GroupNorm 8, SiLU, per-sample sinusoidal timestep embedding through two linears, a per-block
  shift), epsilon-prediction MSE at random timesteps of a linear 1000-step schedule; batch 50.
Prints samples/s for each.

usage: python pdiff_peer.py [--steps N]   (needs torch; all cores, as the Rust bench; PW_DEVICE=cuda
runs it on the GPU, as `make bench-gpu GPU_DEVICE=cuda`)
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

DIM, BATCH, CH, LAT, K = 1536, 50, [32, 64, 128, 128], 4, 5
HID, BLOCKS = 32, 4


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        p, c_in, down = K // 2, 1, []
        for c in CH:
            down.append(nn.Conv1d(c_in, c, K, stride=2, padding=p))
            c_in = c
        self.down = nn.ModuleList(down)
        self.to_latent = nn.Conv1d(c_in, LAT, K, padding=p)
        self.from_latent = nn.Conv1d(LAT, c_in, K, padding=p)
        rev = CH[::-1] + [CH[0]]
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(a, b, K, stride=2, padding=p, output_padding=1) for a, b in zip(rev, rev[1:])
        )
        self.out = nn.Conv1d(CH[0], 1, K, padding=p)

    def loss(self, x):
        h = (x + 0.001 * torch.randn_like(x)).unsqueeze(1)
        for c in self.down:
            h = F.leaky_relu(c(h), 0.2)
        z = torch.tanh(self.to_latent(h))
        h = F.leaky_relu(self.from_latent(z + 0.1 * torch.randn_like(z)), 0.2)
        for c in self.up:
            h = F.leaky_relu(c(h), 0.2)
        return F.mse_loss(self.out(h).squeeze(1), x)


def timestep_embedding(t, dim):
    half = dim // 2
    f = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float64) / half)
    a = t.double()[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1).float()


class Denoiser(nn.Module):
    def __init__(self):
        super().__init__()
        conv = lambda a, b: nn.Conv1d(a, b, 3, padding=1)
        self.input, self.output = conv(LAT, HID), conv(HID, LAT)
        self.time1, self.time2 = nn.Linear(HID, HID), nn.Linear(HID, HID)
        self.norms = nn.ModuleList(nn.GroupNorm(8, HID) for _ in range(BLOCKS))
        self.convs = nn.ModuleList(conv(HID, HID) for _ in range(BLOCKS))
        self.times = nn.ModuleList(nn.Linear(HID, HID) for _ in range(BLOCKS))
        self.out_norm = nn.GroupNorm(8, HID)

    def forward(self, x, t):
        emb = self.time2(F.silu(self.time1(timestep_embedding(t, HID))))
        h = self.input(x)
        for norm, conv, time in zip(self.norms, self.convs, self.times):
            h = h + conv(F.silu(norm(h) + time(emb)[:, :, None]))
        return self.output(F.silu(self.out_norm(h)))


def train_step(model, loss_fn):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    device, on = peer_device()
    torch.set_default_device(device)
    torch.manual_seed(0)
    tag = peer_tag(device)
    ae, x = Autoencoder(), torch.randn(BATCH, DIM)
    dt = timed(train_step(ae, lambda: ae.loss(x)), a.steps, device)
    print(f"{tag}: autoencoder training ({CH}, {DIM} values): {BATCH / dt:.0f} samples/s")
    figure(f"p-diff autoencoder step{on}", BATCH / dt, "samples/s", f"pytorch {torch.__version__}")
    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    den, z = Denoiser(), torch.randn(BATCH, LAT, DIM // 16)

    def ddpm_loss():
        t = torch.randint(0, 1000, (BATCH,))
        ab = alpha_bar[t].float()[:, None, None]
        eps = torch.randn_like(z)
        return F.mse_loss(den(ab.sqrt() * z + (1 - ab).sqrt() * eps, t), eps)

    dt = timed(train_step(den, ddpm_loss), a.steps, device)
    print(f"{tag}: denoiser training (hidden {HID}, latent [{LAT}, {DIM // 16}]): {BATCH / dt:.0f} samples/s")
    figure(f"p-diff denoiser step{on}", BATCH / dt, "samples/s", f"pytorch {torch.__version__}")


if __name__ == "__main__":
    main()
