"""Runs the official VideoPrism FactorizedEncoder (Flax) on a checkpoint and frames we wrote.

The official source is read from a git directory (the snapshot that `fetch` brings onto the
machine); its two modules the encoder needs (videoprism/layers.py, videoprism/encoders.py) are
extracted into a temporary folder for this run only, so nothing of it lives in our repository.

usage: official_forward.py --git-dir DIR --ckpt ckpt.npz --frames frames.npy --out out.npy
       --patch P --dim D --heads H --spatial L --temporal L --mlp M --grid G --frames-emb T --cap C
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


def extract_official(git_dir, dest):
    pkg = os.path.join(dest, "videoprism")
    os.makedirs(pkg, exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for name in ("layers.py", "encoders.py"):
        src = subprocess.run(
            ["git", "--git-dir", git_dir, "show", f"HEAD:videoprism/{name}"],
            check=True, capture_output=True,
        ).stdout
        with open(os.path.join(pkg, name), "wb") as f:
            f.write(src)


def nested(flat):
    tree = {}
    for key, value in flat.items():
        node = tree
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--git-dir", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", required=True)
    for k in ("patch", "dim", "heads", "spatial", "temporal", "mlp", "grid", "frames-emb"):
        ap.add_argument(f"--{k}", type=int, required=True)
    ap.add_argument("--cap", type=float, required=True)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp()
    extract_official(a.git_dir, tmp)
    sys.path.insert(0, tmp)
    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    from videoprism import encoders  # noqa: E402

    model = encoders.FactorizedEncoder(
        patch_size=a.patch,
        pos_emb_shape=(a.frames_emb, a.grid, a.grid),
        model_dim=a.dim,
        num_spatial_layers=a.spatial,
        num_temporal_layers=a.temporal,
        num_heads=a.heads,
        mlp_dim=a.mlp,
        atten_logit_cap=a.cap,
        scan=True,
    )
    ck = np.load(a.ckpt)
    params = {"params": nested({k: np.asarray(ck[k]) for k in ck.files})}
    frames = np.load(a.frames)
    out, _ = model.apply(params, frames, train=False)
    np.save(a.out, np.asarray(out, dtype=np.float32))


if __name__ == "__main__":
    main()
