"""The book's networks: SimpleNet (ch. 2), the AlexNet-style CNNNet (ch. 3), and transfer
learning's replacement head (ch. 4) on any torchvision or timm backbone."""

from __future__ import annotations

import torch
from torch import nn

from ptcli.errors import UsageError


class SimpleNet(nn.Module):
    """Three fully connected layers on the flattened image (book ch. 2; it used 64x64 RGB)."""

    def __init__(self, num_classes: int = 2, image_size: int = 64) -> None:
        super().__init__()
        self.inputs = 3 * image_size * image_size
        self.fc1 = nn.Linear(self.inputs, 84)
        self.fc2 = nn.Linear(84, 50)
        self.fc3 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.inputs:
            raise ValueError(f"SimpleNet was built for {self.inputs} input values per image, got {x[0].numel()}")
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)  # logits: the book's softmax lives in the loss


class CNNNet(nn.Module):
    """The book's AlexNet-style convolutional network (ch. 3). Needs images of 64 px or more."""

    MIN_SIZE = 64

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def book_head(in_features: int, num_classes: int, hidden: int = 500, dropout: float = 0.5) -> nn.Sequential:
    """Linear-ReLU-Dropout-Linear, as the book puts on a pretrained ResNet (ch. 4)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def remove_classifier(model: nn.Module) -> int:
    """Replace the model's last Linear layer (fc, classifier, head...) with Identity, so that it
    returns features; returns their size."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise UsageError(f"{type(model).__name__} has no Linear classifier to replace; pick another backbone for transfer learning")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    in_features = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return in_features


class TransferNet(nn.Module):
    """A pretrained backbone without its classifier, and a new head (parameter groups
    ``backbone`` and ``head``, so the backbone can be frozen and given its own learning rate)."""

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "book", hidden: int = 500, dropout: float = 0.5) -> None:
        super().__init__()
        features = remove_classifier(backbone)
        self.backbone = backbone
        self.head = book_head(features, num_classes, hidden, dropout) if head == "book" else nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
