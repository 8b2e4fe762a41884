"""The seed's net in PyTorch, for cross-checks with under8k (torch is not a project dependency).

  python3 scripts/seed_net.py fixture DIR      write DIR/seed_torch.safetensors (a PyTorch
                                               state_dict) and DIR/seed_torch_io.safetensors
                                               (input, outputs, BatchNorm stats after one
                                               training-mode forward) for crates/model/tests
  python3 scripts/seed_net.py load CKPT        load an under8k checkpoint with strict=True and
                                               print the eval output on the fixture's input
"""
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file, load_file

DROP = 0.029


def block(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=0, bias=False), nn.BatchNorm2d(cout),
                         nn.Dropout(DROP), nn.ReLU())


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
        self.gap = nn.AvgPool2d(kernel_size=5)
        self.convblock8 = nn.Sequential(nn.Conv2d(32, 10, 1, padding=0, bias=False))

    def forward(self, x):
        x = self.convblock3(self.convblock2(self.convblock1(x)))
        x = self.convblock4(self.pool1(x))
        x = self.convblock7(self.convblock6(self.convblock5(x)))
        x = self.convblock8(self.gap(x))
        return F.log_softmax(x.view(-1, 10), dim=-1)


def fixture_input():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 1, 28, 28, generator=g)


if sys.argv[1] == "fixture":
    out = sys.argv[2]
    torch.manual_seed(0)
    m = Net()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # non-trivial BatchNorm state so that eval mode is really tested
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(1 + 0.5 * torch.rand(mod.running_var.shape, generator=g))
                mod.num_batches_tracked.fill_(37)
    save_file(m.state_dict(), f"{out}/seed_torch.safetensors")
    x = fixture_input()
    m.eval()
    with torch.no_grad():
        out_eval = m(x)
    m.train()
    for mod in m.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0  # dropout off, BatchNorm in training mode
    with torch.no_grad():
        out_train = m(x)
    sd = m.state_dict()
    io = {"input": x, "out_eval": out_eval, "out_train": out_train}
    for b in ["convblock1.1", "convblock7.1"]:
        io[f"{b}.running_mean"] = sd[f"{b}.running_mean"]
        io[f"{b}.running_var"] = sd[f"{b}.running_var"]
        io[f"{b}.num_batches_tracked"] = sd[f"{b}.num_batches_tracked"]
    save_file({k: v.contiguous() for k, v in io.items()}, f"{out}/seed_torch_io.safetensors")
    print("wrote", out)
elif sys.argv[1] == "load":
    m = Net()
    m.load_state_dict(load_file(sys.argv[2]), strict=True)
    m.eval()
    with torch.no_grad():
        print(m(fixture_input()).tolist())
