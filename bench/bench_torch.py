"""The seeds' DCGAN in PyTorch, timed like bench/bench.ts times the tfjs one (models/dcgan.ts).

Arguments: batch, timed steps, image size (32, 64, 128), conv dim (D's and G's), untimed steps first.
Prints one number: images per second of full D+G training steps on the CPU (or the GPU torch sees
first, when FACEGAN_TORCH_DEVICE=cuda).
"""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
# Use every core, as a PyTorch user would (this interpreter starts with one thread here).
torch.set_num_threads(os.cpu_count() or 1)
batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
size = int(sys.argv[3]) if len(sys.argv) > 3 else 32
d_dim = g_dim = int(sys.argv[4]) if len(sys.argv) > 4 else 32
warm_up = int(sys.argv[5]) if len(sys.argv) > 5 else 1
z_size = 100
depth = {32: 3, 64: 4, 128: 5}[size]
device = os.environ.get("FACEGAN_TORCH_DEVICE", "cpu")


class D(nn.Module):
    """conv(3->d) lrelu, then per halving conv(no bias)+BN lrelu, then a linear head."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, d_dim, 4, 2, 1)
        self.convs = nn.ModuleList(nn.Conv2d(d_dim * 2**i, d_dim * 2 ** (i + 1), 4, 2, 1, bias=False) for i in range(depth - 1))
        self.norms = nn.ModuleList(nn.BatchNorm2d(d_dim * 2 ** (i + 1)) for i in range(depth - 1))
        self.fc = nn.Linear(d_dim * 2 ** (depth - 1) * 16, 1)

    def forward(self, x):
        x = F.leaky_relu(self.first(x), 0.2)
        for conv, norm in zip(self.convs, self.norms):
            x = F.leaky_relu(norm(conv(x)), 0.2)
        return self.fc(x.flatten(1))


class G(nn.Module):
    """linear to 4x4, per doubling convT(no bias)+BN relu, then convT(->3) tanh."""

    def __init__(self):
        super().__init__()
        top = g_dim * 2 ** (depth - 1)
        self.fc = nn.Linear(z_size, top * 16)
        self.convs = nn.ModuleList(nn.ConvTranspose2d(top // 2**i, top // 2 ** (i + 1), 4, 2, 1, bias=False) for i in range(depth - 1))
        self.norms = nn.ModuleList(nn.BatchNorm2d(top // 2 ** (i + 1)) for i in range(depth - 1))
        self.last = nn.ConvTranspose2d(g_dim, 3, 4, 2, 1)

    def forward(self, z):
        x = self.fc(z).view(-1, g_dim * 2 ** (depth - 1), 4, 4)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return torch.tanh(self.last(x))


d, g = D().to(device), G().to(device)
opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
real = torch.rand(batch, 3, size, size, device=device) * 2 - 1
bce = nn.BCEWithLogitsLoss()


def step():
    opt_d.zero_grad()
    fake = g(torch.randn(batch, z_size, device=device))
    real_target = torch.full((batch, 1), 0.9, device=device)
    loss_d = bce(d(real), real_target) + bce(d(fake.detach()), torch.zeros(batch, 1, device=device))
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    loss_g = bce(d(g(torch.randn(batch, z_size, device=device))), torch.ones(batch, 1, device=device))
    loss_g.backward()
    opt_g.step()


def sync():
    if device != "cpu":
        torch.cuda.synchronize()


for _ in range(warm_up):
    step()
sync()
start = time.perf_counter()
for _ in range(steps):
    step()
sync()
print(batch * steps / (time.perf_counter() - start))
