"""Records torch.optim's parameter sequences on a tiny problem, for the optimiser parity tests;
torch.nn.CrossEntropyLoss's label-smoothed losses on fixed logits, for the loss's; Adam under
OneCycleLR (its learning rate and beta1 cycled), for the schedule's; and AveragedModel's
exponential moving average of a small net's weights and BatchNorm buffers, for weight averaging.

    python3 scripts/optim_fixture.py > crates/train/tests/fixtures/optim_pytorch.json

Parameters w = [[0.5, -0.3], [0.8, 0.1]], b = [0.2, -0.4] (float64); step i (0, 1, ...) minimises
(i + 1) * sum((w @ x + b - t)^2) with x = [1, 2], t = [0.3, -0.7]. After each of 25 steps the
values w.flatten() + b are recorded. Needs `pip install torch` (the project itself never does).
"""
import json

import torch

STEPS = 25


def run(make):
    w = torch.tensor([[0.5, -0.3], [0.8, 0.1]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.2, -0.4], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    t = torch.tensor([0.3, -0.7], dtype=torch.float64)
    opt = make([w, b])
    out = []
    for i in range(STEPS):
        opt.zero_grad()
        y = (w @ x).squeeze(1) + b
        loss = ((y - t) ** 2).sum() * (i + 1)
        loss.backward()
        opt.step()
        out.append(w.detach().flatten().tolist() + b.detach().tolist())
    return out


CASES = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.05),
    "adam_l2_amsgrad": lambda p: torch.optim.Adam(
        p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True
    ),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
    "sgd_nesterov": lambda p: torch.optim.SGD(
        p, lr=0.01, momentum=0.98, nesterov=True, weight_decay=5e-5
    ),
    "sgd_dampening": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, dampening=0.5),
}

def one_cycle_adam():
    """Adam on the tiny problem under OneCycleLR(max_lr=0.05, total_steps=25): its parameters and
    (lr, beta1) before each step."""
    w = torch.tensor([[0.5, -0.3], [0.8, 0.1]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.2, -0.4], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    t = torch.tensor([0.3, -0.7], dtype=torch.float64)
    opt = torch.optim.Adam([w, b], lr=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=STEPS)
    params, rates = [], []
    for i in range(STEPS):
        g = opt.param_groups[0]
        rates.append([g["lr"], g["betas"][0]])
        opt.zero_grad()
        y = (w @ x).squeeze(1) + b
        loss = ((y - t) ** 2).sum() * (i + 1)
        loss.backward()
        opt.step()
        sched.step()
        params.append(w.detach().flatten().tolist() + b.detach().tolist())
    return {"params": params, "rates": rates}


def ema(decay=0.8):
    """A Linear(3, 2) then BatchNorm1d(2) (float32), trained by SGD on fixed batches in training
    mode, with AveragedModel(get_ema_multi_avg_fn(decay), use_buffers=True) updated after every
    step: per step, the model's and the average's weight, bias, running_mean and running_var."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    avg = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    names = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"]
    model, averaged = [], []
    for i in range(STEPS):
        x = torch.tensor([[((i + r * 5 + c * 3) % 7) / 3.0 - 1.0 for c in range(3)] for r in range(4)])
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
        avg.update_parameters(net)
        m, a = net.state_dict(), avg.module.state_dict()
        model.append({n: m[n].flatten().tolist() for n in names})
        averaged.append({n: a[n].flatten().tolist() for n in names})
    return {"decay": decay, "model": model, "averaged": averaged}


def smoothing():
    """Logits of 4 images over 10 classes (a fixed pattern), their labels, and the mean
    CrossEntropyLoss(label_smoothing=e) for each e, with the gradient of the first image's
    log-probabilities' loss."""
    logits = torch.tensor(
        [[((i * 7 + c * 3) % 11) / 4.0 - 1.2 for c in range(10)] for i in range(4)],
        dtype=torch.float64,
    )
    labels = torch.tensor([3, 0, 9, 5])
    losses = {}
    for e in [0.0, 0.1, 0.25]:
        losses[str(e)] = torch.nn.CrossEntropyLoss(label_smoothing=e)(logits, labels).item()
    return {"logits": logits.tolist(), "labels": labels.tolist(), "losses": losses}


print(
    json.dumps(
        {
            "torch": torch.__version__,
            "steps": STEPS,
            "cases": {k: run(f) for k, f in CASES.items()},
            "label_smoothing": smoothing(),
            "one_cycle_adam": one_cycle_adam(),
            "ema": ema(),
        },
        indent=1,
    )
)
