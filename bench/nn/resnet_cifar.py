"""``resnet18-cifar``: ResNet-18 with the CIFAR stem, the usual architecture for 32x32 images (the CIFAR presets use it; `--model` still defaults to ``mlp``).

He et al. ("Deep Residual Learning for Image Recognition", CVPR 2016) built ResNet-18 for
224x224 ImageNet images: a 7x7 stride-2 convolution and a max pool shrink the input 4x before
the first block, which on 32x32 images leaves 1x1 maps in the last stage. The usual CIFAR
variant (kuangliu/pytorch-cifar ``models/resnet.py``, the ResNet-18 of most unlearning papers,
e.g. SalUn and SCRUB) replaces that stem with one 3x3 stride-1 convolution and no max pool, so
the four stages see 32, 16, 8 and 4 pixel maps; everything else is the ImageNet ResNet-18
(BasicBlocks [2, 2, 2, 2], widths 64-512, BatchNorm, 1x1 projection shortcuts), 11.2M parameters
for 10 classes.

Built from timm's ``resnet18`` (``pretrained=False``) with ``conv1`` and ``maxpool`` replaced,
so it keeps timm's interface (``forward_features``, ``forward_head``, ``get_classifier``,
``fc``), which head-only methods use. Expected accuracy with the cifar10 dataset's default recipe
(SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, cosine over 200 epochs, random crop +
flip, i.e. kuangliu/pytorch-cifar's ``main.py``): 93-95% test accuracy on CIFAR-10. Sources:
kuangliu/pytorch-cifar's README table gives 93.02% for this ResNet-18 (same 11,173,962
parameters as this model); afzalxo/ResNet-Simplified-Pytorch reports 95.43% for ResNet-18 after
200 epochs with that repository's augmentation and hyperparameters. Not measured here (no CIFAR
files and no GPU on the development machine).
"""

from __future__ import annotations

from bench.core.errors import BenchError

#: Hyperparameters of the recipe the expected accuracy refers to (with the dataset's 200 epochs
#: and crop + flip augmentation).
RECIPE = {"lr": 0.1, "batch_size": 128, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine"}


def resnet18_cifar(num_classes: int, in_chans: int = 3):
    import timm
    from torch import nn

    model = timm.create_model("resnet18", pretrained=False, num_classes=num_classes, in_chans=in_chans)
    model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # timm's init for convs
    model.maxpool = nn.Identity()
    return model


class ResNet18Cifar:
    name = "resnet18-cifar"
    description = "ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max pool), the usual model for 32x32 images (pass --model resnet18-cifar)."
    default_recipe = dict(RECIPE)

    def create(self, num_classes, input_shape, arg=None):
        if arg:
            raise BenchError(f"Model 'resnet18-cifar' takes no options (got 'resnet18-cifar:{arg}').")
        if len(input_shape) != 3:
            raise BenchError(
                f"Model 'resnet18-cifar' needs image inputs of shape (C, H, W); this dataset's inputs have shape "
                f"{tuple(input_shape)}. Use --model mlp for vector data."
            )
        return resnet18_cifar(num_classes, input_shape[0])
