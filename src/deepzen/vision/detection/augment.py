"""Augmentation for detection: every geometric change to the pixels is made to the boxes too.

Batched tensor math on ``images`` (N, C, H, W) floats in [0, 1] and padded ``targets`` (N, M, 5)
rows ``x1, y1, x2, y2, class`` (class -1: padding), like :mod:`deepzen.vision.augment` for
classification:

- **flip**: each image is mirrored left-right with probability 1/2; its boxes become
  ``(W - x2, y1, W - x1, y2)``.
- **scale/crop**: each image is scaled by a random factor ``s`` and shifted by a random offset,
  one ``F.grid_sample`` for the batch: ``s > 1`` zooms in and crops, ``s < 1`` zooms out and pads
  with zeros. Boxes map by the same ``x -> s x + t``, are clipped to the image, and a box that keeps
  less than ``min_visible`` of its area (or is under 2 pixels wide or high) becomes padding.
- **photometric**: random brightness, contrast and (RGB) saturation per image; boxes unchanged.

Example:
    >>> augment = DetectionAugment(flip=True, scale=(0.5, 1.5), photometric=0.2, seed=0)
    >>> images, targets = augment(torch.rand(4, 3, 64, 64), torch.tensor([[[8., 8, 40, 40, 1]]]).repeat(4, 1, 1))
    >>> images.shape, targets.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 5]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.vision.detection.boxes import box_area, clip_boxes

MIN_SIDE = 2.0  # pixels: a box narrower or lower than this after cropping is dropped


class DetectionAugment(nn.Module):
    """Random flip, scale/crop and photometric changes of images with their boxes.

    Args:
        flip: mirror left-right with probability 1/2 (leave it off where mirroring changes the
            class, as for digits).
        scale: ``(smallest, largest)`` zoom factor, or None for no scaling and cropping.
        photometric: strength in [0, 1) of the brightness, contrast and saturation changes (0: none).
        min_visible: fraction of a box's (scaled) area that must stay in the image to keep it.
        seed: seeds the augmentation's own generator (None: torch's global one).

    Call arguments:
        images: (N, C, H, W) float images in [0, 1].
        targets: (N, M, 5) padded boxes and classes.

    Returns:
        ``(images, targets)`` of the same shapes, augmented (training mode) or unchanged (eval mode).
    """

    def __init__(self, *, flip: bool = False, scale: tuple[float, float] | None = None, photometric: float = 0.0,
                 min_visible: float = 0.5, seed: int | None = None):
        super().__init__()
        if scale is not None and not 0 < scale[0] <= scale[1]:
            raise ValueError(f"DetectionAugment expects scale=(smallest, largest) with 0 < smallest <= largest. "
                             f"Received: scale={scale!r}")
        if not 0 <= photometric < 1:
            raise ValueError(f"DetectionAugment expects photometric in [0, 1). Received: photometric={photometric!r}")
        self.flip, self.scale, self.photometric, self.min_visible = flip, scale, photometric, min_visible
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def get_config(self) -> dict:
        return {"flip": self.flip, "scale": None if self.scale is None else list(self.scale),
                "photometric": self.photometric, "min_visible": self.min_visible, "seed": self.seed}

    # The generator's state is part of the module's state_dict, so a training checkpoint resumes the draws.
    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state() if self.generator is not None else torch.empty(0, dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        if self.generator is not None and state.numel():
            self.generator.set_state(state.to(torch.uint8).cpu())

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * (high - low) + low).to(device)  # drawn on the CPU

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or targets.dim() != 3 or targets.shape[-1] != 5 or len(images) != len(targets):
            raise ValueError(f"DetectionAugment expects images (N, C, H, W) and targets (N, M, 5). Received: "
                             f"images {tuple(images.shape)}, targets {tuple(targets.shape)}")
        if not self.training:
            return images, targets
        targets = targets.clone()
        if self.flip:
            images, targets = self._flip(images, targets)
        if self.scale is not None:
            images, targets = self._scale_crop(images, targets)
        if self.photometric:
            images = self._photometric(images)
        return images, targets

    def _flip(self, images, targets):
        n, width = len(images), images.shape[-1]
        flipped = self._uniform(n, 0, 1, images.device) < 0.5  # (N,)
        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        mirrored = torch.stack([width - targets[..., 2], targets[..., 1], width - targets[..., 0], targets[..., 3]], -1)
        boxes = torch.where(flipped[:, None, None] & (targets[..., 4:] >= 0), mirrored, targets[..., :4])
        return images, torch.cat([boxes, targets[..., 4:]], dim=-1)

    def _scale_crop(self, images, targets):
        n, _, height, width = images.shape
        device = images.device
        s = self._uniform(n, *self.scale, device)  # (N,)
        # Offsets t such that x -> s x + t keeps the scaled image covering (s >= 1) or inside (s < 1) the frame.
        tx = self._uniform(n, 0, 1, device) * (width - s * width)
        ty = self._uniform(n, 0, 1, device) * (height - s * height)
        # grid_sample reads, for each output point u (normalized to [-1, 1]), the input at (u - t) / s.
        theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
        theta[:, 0, 2] = 1 / s - 1 - 2 * tx / (s * width)
        theta[:, 1, 2] = 1 / s - 1 - 2 * ty / (s * height)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        scale, shift = s[:, None, None], torch.stack([tx, ty, tx, ty], -1)[:, None, :]  # (N, 1, 1), (N, 1, 4)
        moved = targets[..., :4] * scale + shift  # (N, M, 4)
        clipped = clip_boxes(moved, height, width)
        visible = box_area(clipped) >= self.min_visible * box_area(moved)
        large = ((clipped[..., 2] - clipped[..., 0]) >= MIN_SIDE) & ((clipped[..., 3] - clipped[..., 1]) >= MIN_SIDE)
        keep = (targets[..., 4] >= 0) & visible & large
        targets = torch.cat([clipped, targets[..., 4:]], dim=-1)
        return images, torch.where(keep[..., None], targets, torch.full_like(targets, -1.0))

    def _photometric(self, images):
        n, device, strength = len(images), images.device, self.photometric
        brightness = self._uniform(n, -strength, strength, device)[:, None, None, None] / 2
        contrast = self._uniform(n, 1 - strength, 1 + strength, device)[:, None, None, None]
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * contrast + mean + brightness
        if images.shape[1] == 3:
            saturation = self._uniform(n, 1 - strength, 1 + strength, device)[:, None, None, None]
            grey = images.mean(dim=1, keepdim=True)
            images = (images - grey) * saturation + grey
        return images.clamp(0, 1)
