"""PyTorch side of `cargo xtask bench`: the same 7,684-parameter net and training step.

Usage: python3 scripts/bench_torch.py DATA_DIR THREADS BATCHES
Prints one JSON line: {"train_img_per_s": ..., "train_aug_img_per_s": ..., "eval_img_per_s": ...,
"torch": ...}.

Training step, as in the seed's attempt 3: images held in memory as uint8, normalisation,
forward in train mode (BatchNorm batch statistics, dropout 0.029), NLL loss, backward, SGD
momentum 0.9. `train_img_per_s` is that step alone (PyTorch's best case: no augmentation);
`train_aug_img_per_s` adds the seed's random rotation in [-7, 7] degrees per image
(torchvision's `rotate`, nearest, fill 0, one call per image as a Dataset would make).
Evaluation: the 10k test images in batches of 1000, eval mode, no grad (after one warm-up pass).
"""
import gzip, json, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF


def idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw[4 + 4 * ndim :]), dtype=torch.uint8).reshape(dims)


def find(d, stem):
    import os
    for name in (stem, stem + ".gz"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{d}: no {stem}")


def block(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.Dropout(0.029), nn.ReLU())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.convblock1 = block(1, 10, 3)
        self.convblock2 = block(10, 10, 3)
        self.convblock3 = block(10, 15, 3)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.convblock4 = block(15, 10, 1)
        self.convblock5 = block(10, 10, 3)
        self.convblock6 = block(10, 10, 3)
        self.convblock7 = block(10, 32, 3)
        self.gap = nn.AvgPool2d(5)
        self.convblock8 = nn.Conv2d(32, 10, 1, bias=False)

    def forward(self, x):
        x = self.convblock3(self.convblock2(self.convblock1(x)))
        x = self.pool1(x)
        x = self.convblock7(self.convblock6(self.convblock5(self.convblock4(x))))
        x = self.convblock8(self.gap(x))
        return F.log_softmax(x.view(-1, 10), dim=-1)


def main():
    data, threads, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    xs = idx(find(data, "train-images-idx3-ubyte"))[: 128 * batches].unsqueeze(1)
    ys = idx(find(data, "train-labels-idx1-ubyte"))[: 128 * batches].long()
    xt = idx(find(data, "t10k-images-idx3-ubyte")).unsqueeze(1)
    model = Net()
    assert sum(p.numel() for p in model.parameters()) == 7684
    opt = torch.optim.SGD(model.parameters(), lr=0.07, momentum=0.9)

    def step(i, rotate=False):
        x = xs[i * 128 : (i + 1) * 128]
        if rotate:
            angles = (torch.rand(x.shape[0]) * 14 - 7).tolist()
            x = torch.stack([TF.rotate(im, a, interpolation=TF.InterpolationMode.NEAREST, fill=0) for im, a in zip(x, angles)])
        x = (x.float() / 255 - 0.1307) / 0.3081
        opt.zero_grad()
        loss = F.nll_loss(model(x), ys[i * 128 : (i + 1) * 128])
        loss.backward()
        opt.step()

    model.train()
    for i in range(5):  # warm-up
        step(i)
    t = time.perf_counter()
    for i in range(batches):
        step(i)
    train = 128 * batches / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(batches):
        step(i, rotate=True)
    train_aug = 128 * batches / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        evaluate = lambda: [model((xt[i : i + 1000].float() / 255 - 0.1307) / 0.3081).argmax(1) for i in range(0, 10000, 1000)]
        evaluate()
        t = time.perf_counter()
        evaluate()
        ev = 10000 / (time.perf_counter() - t)
    print(json.dumps({"train_img_per_s": train, "train_aug_img_per_s": train_aug, "eval_img_per_s": ev, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
