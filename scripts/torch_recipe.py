"""Any under8k training config (config.json) trained in PyTorch, for `cargo xtask pytorch` on a
research report directory (`cargo xtask research`).

Usage: python3 scripts/torch_recipe.py DATA_DIR CONFIG_JSON SEED THREADS OUT_JSON
Prints one JSON line per epoch, then writes {"attempt": 0, "seed", "torch", "threads",
"schedule", "epochs": [...]} to OUT_JSON.

The net is built from the config's `arch` spec (conv, batch_norm, dropout, relu, max_pool,
avg_pool, global_avg_pool, log_softmax; PyTorch's default initialisation). Training images get, in
this order, the config's random rotation (torchvision's `rotate`, nearest, fill 0), random affine
transform (torchvision's `affine` with RandomAffine's draws: angle, whole-pixel shift, scale; no
shear) and random erasing (torchvision's `RandomErasing.get_params`, fill 0 before
normalisation), each image its own draw, batched through `grid_sample`. The config's optimizer
(`torch.optim.SGD` with its momentum, Nesterov and dampening, or `Adam`/`AdamW`) and weight
decay, its schedule (constant, step, or one_cycle stepped per batch with momentum or beta1
cycled), label smoothing (`cross_entropy(label_smoothing=)` on the log-probabilities), weight
averaging (`AveragedModel` with `get_ema_multi_avg_fn`, updated after every step, both models
tested), batch size and epochs; test accuracy in eval mode. Not a project dependency: needs
torch + torchvision.
"""
import json, math, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import RandomErasing
from torchvision.transforms._functional_tensor import _gen_affine_grid

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_torch import find, idx  # noqa: E402


def build(spec):
    layers, c, side = [], spec["input"][0], spec["input"][1]
    for block in spec["blocks"]:
        for l in block["layers"]:
            t = l["type"]
            if t == "conv":
                layers.append(nn.Conv2d(c, l["out_channels"], l["kernel"], l.get("stride", 1), l.get("padding", 0), bias=l.get("bias", False)))
                c = l["out_channels"]
                side = (side + 2 * l.get("padding", 0) - l["kernel"]) // l.get("stride", 1) + 1
            elif t == "batch_norm":
                layers.append(nn.BatchNorm2d(c))
            elif t == "dropout":
                layers.append(nn.Dropout(l["p"]))
            elif t == "relu":
                layers.append(nn.ReLU())
            elif t == "max_pool":
                layers.append(nn.MaxPool2d(l["kernel"], l["stride"]))
                side = (side - l["kernel"]) // l["stride"] + 1
            elif t == "avg_pool":
                layers.append(nn.AvgPool2d(l["kernel"], l["stride"]))
                side = (side - l["kernel"]) // l["stride"] + 1
            elif t == "global_avg_pool":
                layers.append(nn.AvgPool2d(side))
                side = 1
            elif t == "log_softmax":
                layers.append(nn.Flatten())
                layers.append(nn.LogSoftmax(dim=1))
            else:
                sys.exit(f"layer {t!r} is not supported here")
    return nn.Sequential(*layers)


def warp(x, matrices):
    n, _, h, w = x.shape
    theta = torch.tensor(matrices, dtype=torch.float32).reshape(n, 2, 3)
    grid = torch.cat([_gen_affine_grid(theta[i : i + 1], w=w, h=h, ow=w, oh=h) for i in range(n)])
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment(x, cfg, gen):
    n, _, h, w = x.shape
    if cfg.get("rotation_degrees"):
        d = cfg["rotation_degrees"]
        angles = torch.empty(n).uniform_(-d, d, generator=gen).tolist()
        x = warp(x, [TF._get_inverse_affine_matrix([0.0, 0.0], -a, [0.0, 0.0], 1.0, [0.0, 0.0]) for a in angles])
    a = cfg.get("affine")
    if a:
        mats = []
        for _ in range(n):
            angle = float(torch.empty(1).uniform_(-a["degrees"], a["degrees"], generator=gen).item()) if a["degrees"] else 0.0
            mdx, mdy = a["translate"] * w, a["translate"] * h
            tx = int(round(torch.empty(1).uniform_(-mdx, mdx, generator=gen).item()))
            ty = int(round(torch.empty(1).uniform_(-mdy, mdy, generator=gen).item()))
            s = float(torch.empty(1).uniform_(a["scale"][0], a["scale"][1], generator=gen).item())
            mats.append(TF._get_inverse_affine_matrix([0.0, 0.0], angle, [tx, ty], s, [0.0, 0.0]))
        x = warp(x, mats)
    e = cfg.get("erasing")
    if e:
        for i in range(n):
            if torch.rand(1, generator=gen).item() < e["p"]:
                top, left, hh, ww, _ = RandomErasing.get_params(x[i], scale=tuple(e["area"]), ratio=tuple(e["ratio"]), value=[0.0])
                x[i, :, top : top + hh, left : left + ww] = 0.0
    return x


def optimizer(cfg, model, lr):
    """torch.optim.SGD (momentum, Nesterov, dampening) or Adam/AdamW, as the config says."""
    o = cfg.get("optimizer", {"kind": "sgd"})
    wd = cfg["weight_decay"]
    if o["kind"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg["momentum"], weight_decay=wd,
                               nesterov=o.get("nesterov", False), dampening=o.get("dampening", 0.0))
    make = torch.optim.AdamW if o.get("decoupled") else torch.optim.Adam
    return make(model.parameters(), lr=lr, betas=tuple(o.get("betas", (0.9, 0.999))), eps=o.get("eps", 1e-8),
                weight_decay=wd, amsgrad=o.get("amsgrad", False))


def test_acc(model, xt, yt):
    model.eval()
    with torch.no_grad():
        correct = sum((model(xt[k : k + 1000]).argmax(1) == yt[k : k + 1000]).sum().item() for k in range(0, len(xt), 1000))
    return 100 * correct / len(xt)


def train(cfg, data, seed, threads, out, attempt, make_model):
    """Trains `make_model()` by `cfg` (a config.json's fields; `arch` is not read here) on the IDX
    files in `data`; prints a JSON line per epoch and writes the result file `out`."""
    mean, std, bs, schedule = cfg["mean"], cfg["std"], cfg["batch_size"], cfg["schedule"]
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    xs = idx(find(data, "train-images-idx3-ubyte")).unsqueeze(1).float()
    ys = idx(find(data, "train-labels-idx1-ubyte")).long()
    xt = (idx(find(data, "t10k-images-idx3-ubyte")).unsqueeze(1).float() / 255 - mean) / std
    yt = idx(find(data, "t10k-labels-idx1-ubyte")).long()
    model = make_model()
    kind = schedule["kind"]
    lr = schedule.get("lr", schedule.get("max_lr"))
    opt = optimizer(cfg, model, lr)
    smoothing = cfg.get("label_smoothing", 0.0)
    ema = cfg.get("ema")
    averaged = None
    if ema:
        averaged = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema["decay"]), use_buffers=True)
    epoch_sched = batch_sched = None
    if kind == "step":
        epoch_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=schedule["step_size"], gamma=schedule["gamma"])
    elif kind == "one_cycle":
        base_m, max_m = schedule["momentum"] or (0.85, 0.95)
        batch_sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=schedule["max_lr"], total_steps=schedule["total_steps"], pct_start=schedule["pct_start"],
            div_factor=schedule["div_factor"], final_div_factor=schedule["final_div_factor"],
            cycle_momentum=schedule["momentum"] is not None, base_momentum=base_m, max_momentum=max_m)
    elif kind != "constant":
        sys.exit(f"schedule {kind!r} is not supported here")
    records = []
    for epoch in range(1, cfg["epochs"] + 1):
        t = time.perf_counter()
        model.train()
        order = torch.randperm(len(xs))
        seen = correct = 0
        loss_sum = 0.0
        epoch_lr = opt.param_groups[0]["lr"]
        for i in range(0, len(xs), bs):
            j = order[i : i + bs]
            x = (augment(xs[j], cfg, gen) / 255 - mean) / std
            opt.zero_grad()
            out_ = model(x)
            # On log-probabilities, cross_entropy's log-softmax changes nothing: NLL when ε = 0.
            loss = F.cross_entropy(out_, ys[j], label_smoothing=smoothing)
            loss.backward()
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            if batch_sched:
                batch_sched.step()
            loss_sum += loss.item()
            correct += (out_.argmax(1) == ys[j]).sum().item()
            seen += len(j)
        if epoch_sched:
            epoch_sched.step()
        accs = {"raw": test_acc(model, xt, yt)}
        if averaged is not None:
            accs["averaged"] = test_acc(averaged.module, xt, yt)
        chosen = accs["raw" if not ema or ema.get("model") == "raw" else "averaged"]
        rec = {"epoch": epoch, "lr": epoch_lr, "train_loss": loss_sum / math.ceil(len(xs) / bs),
               "train_acc": 100 * correct / seen, "test_acc": chosen,
               "seconds": time.perf_counter() - t}
        if averaged is not None:
            rec["raw_test_acc"], rec["ema_test_acc"] = accs["raw"], accs["averaged"]
        records.append(rec)
        print(json.dumps(rec), flush=True)
    json.dump({"attempt": attempt, "seed": seed, "torch": torch.__version__, "threads": threads, "schedule": schedule, "epochs": records}, open(out, "w"), indent=1)


def main():
    data, cfg_path, seed, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cfg = json.load(open(cfg_path))
    train(cfg, data, seed, threads, out, 0, lambda: build(cfg["arch"]))


if __name__ == "__main__":
    main()
