"""The torch Dataset: uint8 HxWx3 images -> (uint8 3xHxW tensor, label)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from visionlab.data.images import MAX_PIXELS, load_image


class ImageDataset(Dataset):
    """uint8 HxWx3 images (decoded in memory, or decoded per item) -> (uint8 3xHxW tensor, label)."""

    def __init__(
        self,
        images,
        labels: np.ndarray | None,
        image_size: int,
        interpolation: str,
        transform=None,
        max_pixels: int | None = MAX_PIXELS,
    ):
        self.images, self.labels, self.transform = images, labels, transform
        self.image_size, self.interpolation, self.max_pixels = image_size, interpolation, max_pixels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        if not isinstance(image, np.ndarray) or image.shape != (self.image_size, self.image_size, 3):
            image = load_image(image, self.image_size, self.interpolation, self.max_pixels)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return x, (-1 if self.labels is None else int(self.labels[i]))
