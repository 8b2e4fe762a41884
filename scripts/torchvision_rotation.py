"""Writes torchvision's rotation of MNIST test images for `examples/check_rotation.rs` to compare.

Usage: python3 scripts/torchvision_rotation.py DATA_DIR OUT_FILE [N]
OUT_FILE holds N records: f32 angle (little-endian), 784 input bytes, 784 torchvision output bytes.
Needs torch + torchvision (not a project dependency)."""
import struct, sys
import numpy as np, torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2000
raw = open(f"{data}/t10k-images-idx3-ubyte", "rb").read()[16:]
imgs = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28)[:n]
g = torch.Generator().manual_seed(0)
with open(out, "wb") as f:
    for i, img in enumerate(imgs):
        # half the records in the seed's range, half over the whole circle
        d = 7.0 if i % 2 == 0 else 180.0
        angle = float(torch.empty(1).uniform_(-d, d, generator=g).item())
        t = torch.from_numpy(img.astype(np.float32) / 255.0)[None]  # ToTensor
        r = F.rotate(t, angle, interpolation=InterpolationMode.NEAREST, fill=[0.0])
        back = torch.round(r[0] * 255.0).to(torch.uint8).numpy()
        f.write(struct.pack("<f", angle) + img.tobytes() + back.tobytes())
