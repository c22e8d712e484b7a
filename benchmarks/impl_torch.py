"""PyTorch (CPU, eager), the usual loop, threads set to the cores we may use.

The tensors stay in memory and each batch is indexed from a ``randperm``
(faster than a ``DataLoader`` over in-memory tensors); the last partial batch
is dropped like the JAX loops do.
"""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn

THREADS = len(os.sched_getaffinity(0))


def make(config, x, y):
    """Returns ``train(epochs) -> loss``."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    sizes = config["sizes"]
    layers: list[nn.Module] = []
    for m, n in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(m, n), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    criterion = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    batch, steps = config["batch_size"], x.shape[0] // config["batch_size"]
    generator = torch.Generator().manual_seed(1)

    def train(epochs: int) -> float:
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(x.shape[0], generator=generator)
            for i in range(steps):
                idx = perm[i * batch : (i + 1) * batch]
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(xt[idx]), yt[idx])
                loss.backward()
                optimizer.step()
        return float(loss.detach())

    return train


def runtime_info() -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }
