"""The seed's attempts trained in PyTorch, to compare the distribution of results with ours.

Usage: python3 scripts/torch_reproduce.py DATA_DIR ATTEMPT SEED THREADS OUT_JSON EPOCHS SCHEDULE_JSON [MEAN STD]
Prints one JSON line per epoch, then writes {"attempt", "seed", "torch", "threads", "schedule",
"epochs": [...]} to OUT_JSON. `cargo xtask pytorch` runs it and adds the results to the report.

The recipe is the attempt's (see `TrainConfig::attempt` and `TrainConfig::write_up`): batch 128
shuffled each epoch, the 7,684-parameter net of `bench_torch.py` with PyTorch's default
initialisation, NLL loss on log-softmax, SGD momentum 0.9; attempts 2 and 3 add a random rotation
uniform in [-7, 7] degrees (nearest, fill 0, about the centre). The learning rate follows
SCHEDULE_JSON, the `schedule` of the run's config.json: constant; step (StepLR, stepped after each
epoch; the write-up's attempt 3 is StepLR(1) from 0.07 with gamma = (0.07 - 0.1/15)/0.07); or
one_cycle (OneCycleLR, stepped after each batch, momentum cycled). Pixels are normalised as
(x/255 - MEAN)/STD, the config's `mean` and `std` (MNIST's 0.1307 and 0.3081 by default; for
Fashion-MNIST computed from its training split). Test accuracy in eval mode.

The rotation is torchvision's tensor `rotate` (the same inverse matrix, grid and `grid_sample`),
batched over the images of a batch with one angle each, so the run is not held up by a per-image
Python call. Not a project dependency: needs torch + torchvision.
"""
import json, math, sys, time

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms._functional_tensor import _gen_affine_grid

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_torch import Net, find, idx  # noqa: E402


def rotate_batch(x, degrees, gen):
    """x: (N,1,28,28) float pixels; each image rotated by its own angle, as TF.rotate would."""
    n, _, h, w = x.shape
    angles = torch.empty(n).uniform_(-degrees, degrees, generator=gen).tolist()
    theta = torch.tensor(
        [TF._get_inverse_affine_matrix([0.0, 0.0], -a, [0.0, 0.0], 1.0, [0.0, 0.0]) for a in angles]
    ).reshape(n, 2, 3)
    grid = torch.cat([_gen_affine_grid(theta[i : i + 1], w=w, h=h, ow=w, oh=h) for i in range(n)])
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def main():
    data, attempt, seed, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    epochs, schedule = int(sys.argv[6]), json.loads(sys.argv[7])
    mean, std = (float(sys.argv[8]), float(sys.argv[9])) if len(sys.argv) > 9 else (0.1307, 0.3081)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    xs = idx(find(data, "train-images-idx3-ubyte")).unsqueeze(1).float()
    ys = idx(find(data, "train-labels-idx1-ubyte")).long()
    xt = (idx(find(data, "t10k-images-idx3-ubyte")).unsqueeze(1).float() / 255 - mean) / std
    yt = idx(find(data, "t10k-labels-idx1-ubyte")).long()
    model = Net()
    kind = schedule["kind"]
    opt = torch.optim.SGD(model.parameters(), lr=schedule.get("lr", schedule.get("max_lr")), momentum=0.9)
    epoch_sched = batch_sched = None
    if kind == "step":
        epoch_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=schedule["step_size"], gamma=schedule["gamma"])
    elif kind == "one_cycle":
        base_m, max_m = schedule["momentum"] or (0.85, 0.95)
        batch_sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=schedule["max_lr"],
            total_steps=schedule["total_steps"],
            pct_start=schedule["pct_start"],
            div_factor=schedule["div_factor"],
            final_div_factor=schedule["final_div_factor"],
            cycle_momentum=schedule["momentum"] is not None,
            base_momentum=base_m,
            max_momentum=max_m,
        )
    elif kind != "constant":
        sys.exit(f"schedule {kind!r} is not supported here")
    records = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        model.train()
        order = torch.randperm(len(xs))
        seen = correct = 0
        loss_sum = 0.0
        epoch_lr = opt.param_groups[0]["lr"]
        for i in range(0, len(xs), 128):
            j = order[i : i + 128]
            x = xs[j]
            if attempt >= 2:
                x = rotate_batch(x, 7.0, gen)
            x = (x / 255 - mean) / std
            opt.zero_grad()
            out_ = model(x)
            loss = F.nll_loss(out_, ys[j])
            loss.backward()
            opt.step()
            if batch_sched:
                batch_sched.step()
            loss_sum += loss.item()
            correct += (out_.argmax(1) == ys[j]).sum().item()
            seen += len(j)
        if epoch_sched:
            epoch_sched.step()
        model.eval()
        with torch.no_grad():
            test_correct = sum((model(xt[k : k + 1000]).argmax(1) == yt[k : k + 1000]).sum().item() for k in range(0, 10000, 1000))
        rec = {
            "epoch": epoch,
            "lr": epoch_lr,
            "train_loss": loss_sum / math.ceil(len(xs) / 128),
            "train_acc": 100 * correct / seen,
            "test_acc": test_correct / 100,
            "seconds": time.perf_counter() - t,
        }
        records.append(rec)
        print(json.dumps(rec), flush=True)
    json.dump({"attempt": attempt, "seed": seed, "torch": torch.__version__, "threads": threads, "schedule": schedule, "epochs": records}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
