"""Writes torchvision's rotations and affine transforms of MNIST test images, the fixture
`crates/mnist-data/tests/torchvision_affine.rs` holds `augment::affine` to.

Usage: python3 scripts/torchvision_affine.py DATA_DIR OUT_FILE [N]
OUT_FILE: N records of 4 + 4 + 4 + 4 + 4 + 784 + 784 bytes, little-endian: u32 kind (0: F.rotate
by `angle` counter-clockwise; 1: F.affine with `angle` clockwise, `translate`, `scale`, shear 0),
f32 angle, i32 tx, i32 ty, f32 scale, the input image, torchvision's output.
Needs torch + torchvision (not a project dependency)."""
import struct, sys
import numpy as np, torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 160
raw = open(f"{data}/t10k-images-idx3-ubyte", "rb").read()[16:]
imgs = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28)[:n]
g = torch.Generator().manual_seed(0)


def uniform(lo, hi):
    # An f32 value, as RandomAffine draws it (`torch.empty(1).uniform_(...).item()`).
    return float(torch.empty(1).uniform_(lo, hi, generator=g).item())


with open(out, "wb") as f:
    for i, img in enumerate(imgs):
        t = torch.from_numpy(img.astype(np.float32) / 255.0)[None]  # ToTensor
        kind = i % 2
        if kind == 0:
            angle, tx, ty, scale = uniform(-180.0, 180.0), 0, 0, 1.0
            r = F.rotate(t, angle, interpolation=InterpolationMode.NEAREST, fill=[0.0])
        else:
            # RandomAffine(degrees=15, translate=(0.15, 0.15), scale=(0.8, 1.2))'s ranges; the
            # translation is whole pixels, as RandomAffine rounds it.
            angle = uniform(-15.0, 15.0)
            tx, ty = int(round(uniform(-4.2, 4.2))), int(round(uniform(-4.2, 4.2)))
            scale = uniform(0.8, 1.2)
            r = F.affine(t, angle=angle, translate=[tx, ty], scale=scale, shear=[0.0, 0.0],
                         interpolation=InterpolationMode.NEAREST, fill=[0.0])
        back = torch.round(r[0] * 255.0).to(torch.uint8).numpy()
        f.write(struct.pack("<Ifiif", kind, angle, tx, ty, scale) + img.tobytes() + back.tobytes())
