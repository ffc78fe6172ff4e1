"""Standard-layer pieces the families' extracted networks share: conv -> BN -> activation, and
folding those BNs into their convs.

Every family's `ConvBNAct` subclasses the one here (with its own activations), so `fold_bn`
folds the BNs of any family's extracted net.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["ConvBNAct", "fold_bn", "layer_macs"]


class ConvBNAct(nn.Sequential):
    """conv -> (BN) -> (activation); a missing BN or activation is an Identity."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: nn.Module | None):
        super().__init__()
        self.conv = conv
        self.bn = bn if bn is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()


def fold_bn(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm of `net`'s `ConvBNAct`s into its conv, in place (eval only: the
    running statistics become the conv's weight and bias, the BN an Identity). The outputs
    are those of the eval-mode net up to float rounding (~1e-5 on logits); inference runs
    10-20% faster on CPU (the accuracy-dataset build uses it after BN recalibration)."""
    if net.training:
        raise ValueError("fold_bn needs a model in eval mode (training BN uses batch statistics)")
    for module in net.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), nn.Identity()
    return net


def layer_macs(net: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one batch-1 forward pass of a network whose only products are its
    Conv2d and Linear layers (a CNN's: BN, activations, pooling and SE gates multiply nothing
    PyTorch's FLOP counter counts), counted with forward hooks on those layers: the FLOP counter's
    number (tests/test_family_pipeline.py) in a few milliseconds instead of ~50 ms of its
    dispatch mode."""
    total = [0]

    def conv(m: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        total[0] += output.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        total[0] += output.numel() * m.in_features

    handles = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
               for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    return total[0]
