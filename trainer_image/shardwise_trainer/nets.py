"""The constituent models: an MLP for feature vectors, a small CNN for images."""

from __future__ import annotations

import torch
from torch import nn


def build_net(kind: str, hidden: list[int], input_shape: tuple[int, ...], classes: int) -> nn.Module:
    if kind == "mlp":
        dims = [int(torch.tensor(input_shape).prod())] + list(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], classes))
        return nn.Sequential(*layers)
    if kind == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"architecture.kind 'cnn' needs image samples (C, H, W), got shape {input_shape}")
        width = hidden[0] if hidden else 128
        return nn.Sequential(
            nn.Conv2d(input_shape[0], 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, width),
            nn.ReLU(),
            nn.Linear(width, classes),
        )
    raise ValueError(f"architecture.kind {kind!r} is not one of mlp, cnn")
