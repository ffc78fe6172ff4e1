"""The torchvision view of an `ImageSet`, apart so that `datasets.images` needs numpy alone."""

from __future__ import annotations

import torch
from torchvision.datasets import VisionDataset

__all__ = ["ArrayDataset"]


class ArrayDataset(VisionDataset):
    """torchvision view of an `ImageSet` (item: uint8 CxHxW tensor, label)."""

    def __init__(self, data, transform=None):
        super().__init__(root=None, transform=transform)
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = torch.from_numpy(self.data.images[i])
        image = image.unsqueeze(0) if image.dim() == 2 else image
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[i])
