"""Training-time data augmentation applied on the device, one whole batch at a time.

The standard CIFAR-10/100 and SVHN recipes train on random crops of the image padded by 4
pixels on each side, horizontally flipped with probability 1/2 (He et al., "Deep Residual
Learning for Image Recognition", CVPR 2016, section 4.2; kuangliu/pytorch-cifar's
``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``). torchvision applies those per
image in DataLoader workers; here they run on the batch tensor already on the device, with
the random draws taken from a generator on that device, so an epoch costs a few tensor
operations and a seed reproduces it.

Deviation: the padding is reflective (as in Keller Jordan's airbench ``batch_crop``), not
zeros, because the batch is already normalised: a zero there would be the mean colour, not
black. The recipe field ``augment`` selects it (``none``, ``flip``, ``crop``, ``crop-flip``); with
``none`` no random number is drawn and training is bit-identical to a run without this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.core.errors import BenchError

PAD = 4  # pixels of padding for the random crop (He et al. 2016)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``x`` (B, C, H, W) left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """A random H x W window of each image of ``x`` reflect-padded by ``pad`` pixels, one
    independent offset per image, gathered for the whole batch at once."""
    b, c, h, w = x.shape
    pad = min(pad, h - 1, w - 1)  # reflect padding must be smaller than the image
    if pad <= 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    # two gathers (rows, then columns): much cheaper than one 4-D advanced index on the CPU
    out = padded.gather(2, rows.expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols.expand(b, c, h, w))


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the recipe's augmentation ``kind`` to the batch ``x``."""
    if kind == "none":
        return x
    if x.dim() != 4:
        raise BenchError(
            f"Recipe augment='{kind}' needs image batches of shape (B, C, H, W); this dataset's batches have "
            f"shape {tuple(x.shape)}. Use --recipe augment=none for vector data."
        )
    if kind == "crop-flip":
        return random_flip(random_crop(x, generator), generator)
    if kind == "crop":
        return random_crop(x, generator)
    if kind == "flip":
        return random_flip(x, generator)
    raise BenchError(f"Unknown augment '{kind}'; expected none, flip, crop or crop-flip.")
