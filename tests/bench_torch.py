"""The seeds' 32 px DCGAN in PyTorch, timed like tests/bench.ts times the tfjs one.

Prints one number: images per second of full D+G training steps (batch 128) on the CPU.
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
d_dim, g_dim, z_size = 32, 32, 100


class D(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, d_dim, 4, 2, 1)
        self.c2 = nn.Conv2d(d_dim, d_dim * 2, 4, 2, 1, bias=False)
        self.b2 = nn.BatchNorm2d(d_dim * 2)
        self.c3 = nn.Conv2d(d_dim * 2, d_dim * 4, 4, 2, 1, bias=False)
        self.b3 = nn.BatchNorm2d(d_dim * 4)
        self.fc = nn.Linear(d_dim * 4 * 4 * 4, 1)

    def forward(self, x):
        x = F.leaky_relu(self.c1(x), 0.2)
        x = F.leaky_relu(self.b2(self.c2(x)), 0.2)
        x = F.leaky_relu(self.b3(self.c3(x)), 0.2)
        return self.fc(x.flatten(1))


class G(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(z_size, g_dim * 4 * 4 * 4)
        self.t1 = nn.ConvTranspose2d(g_dim * 4, g_dim * 2, 4, 2, 1, bias=False)
        self.b1 = nn.BatchNorm2d(g_dim * 2)
        self.t2 = nn.ConvTranspose2d(g_dim * 2, g_dim, 4, 2, 1, bias=False)
        self.b2 = nn.BatchNorm2d(g_dim)
        self.t3 = nn.ConvTranspose2d(g_dim, 3, 4, 2, 1)

    def forward(self, z):
        x = self.fc(z).view(-1, g_dim * 4, 4, 4)
        x = F.relu(self.b1(self.t1(x)))
        x = F.relu(self.b2(self.t2(x)))
        return torch.tanh(self.t3(x))


d, g = D(), G()
opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
real = torch.rand(batch, 3, 32, 32) * 2 - 1
bce = nn.BCEWithLogitsLoss()


def step():
    opt_d.zero_grad()
    fake = g(torch.randn(batch, z_size))
    loss_d = bce(d(real), torch.full((batch, 1), 0.9)) + bce(d(fake.detach()), torch.zeros(batch, 1))
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    loss_g = bce(d(g(torch.randn(batch, z_size))), torch.ones(batch, 1))
    loss_g.backward()
    opt_g.step()


step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(batch * steps / (time.perf_counter() - start))
