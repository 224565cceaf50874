"""p-diff's files in PyTorch.

  pdiff_torch.py make DIR N     N state dicts of a small nn.Module with BatchNorm (integer
                                `num_batches_tracked` buffers, a float16 weight), as training
                                snapshots, into DIR/ckpt-XX.safetensors
  pdiff_torch.py load CKPT GEN...   each generated file (the BatchNorm's weight and bias only)
                                goes into that module by load_state_dict(strict=False): only
                                the other tensors may be missing, nothing unexpected, dtypes kept
  pdiff_torch.py cnn BASE PROBE     the reproduction's base CNN checkpoint loads into the same
                                network written in PyTorch with load_state_dict(strict=True),
                                and gives the logits that paperworks computed for PROBE's input
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def small():
    return nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


class Cnn(nn.Module):
    """pw-pdiff's model.rs Cnn, layer for layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.gn2 = nn.GroupNorm(8, 32)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 512)
        self.ln1 = nn.LayerNorm(512)
        self.fc2 = nn.Linear(512, 256)
        self.ln2 = nn.LayerNorm(256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.gn1(self.conv1(x))))
        h = self.pool(torch.relu(self.gn2(self.conv2(h))))
        h = torch.relu(self.ln1(self.fc1(h.flatten(1))))
        h = torch.relu(self.ln2(self.fc2(h)))
        return self.fc3(h)


cmd = sys.argv[1]
if cmd == "make":
    out, n = sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    m = small()
    for i in range(n):
        with torch.no_grad():
            m[1].weight.add_(0.01 * torch.randn(6))
            m[1].bias.add_(0.01 * torch.randn(6))
        m.train()
        m(torch.randn(16, 8))  # moves the running stats and num_batches_tracked
        sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
        sd["0.weight"] = sd["0.weight"].half()
        save_file(sd, f"{out}/ckpt-{i:02}.safetensors")
    print(f"wrote {n} state dicts: {', '.join(f'{k} {v.dtype}' for k, v in sd.items())}")
elif cmd == "load":
    m = small()
    base = load_file(sys.argv[2])
    m.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in base.items()})
    m.eval()
    for path in sys.argv[3:]:
        gen = load_file(path)
        assert sorted(gen) == ["1.bias", "1.weight"], sorted(gen)
        assert all(v.dtype == torch.float32 for v in gen.values()), {k: v.dtype for k, v in gen.items()}
        r = m.load_state_dict(gen, strict=False)
        assert not r.unexpected_keys, r
        assert "1.weight" not in r.missing_keys and "1.running_mean" in r.missing_keys, r
        assert torch.isfinite(m(torch.randn(4, 8))).all()
    print(f"loaded {len(sys.argv) - 3} generated checkpoints with load_state_dict(strict=False)")
elif cmd == "cnn":
    m = Cnn()
    m.load_state_dict(load_file(sys.argv[2]), strict=True)
    m.eval()
    probe = load_file(sys.argv[3])
    with torch.no_grad():
        got = m(probe["x"])
    diff = (got - probe["logits"]).abs().max().item()
    assert diff < 1e-3, diff
    print(f"base CNN: load_state_dict(strict=True), logits within {diff:.2e} of paperworks'")
else:
    raise SystemExit(f"unknown command {cmd}")
