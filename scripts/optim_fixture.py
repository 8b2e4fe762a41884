"""Records torch.optim's parameter sequences on a tiny problem, for the optimiser parity tests,
and torch.nn.CrossEntropyLoss's label-smoothed losses on fixed logits, for the loss's.

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
        },
        indent=1,
    )
)
