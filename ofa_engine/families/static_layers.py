"""Standard-layer pieces the families' extracted networks share: conv -> BN -> activation, and
folding those BNs into their convs.

Every family's `ConvBNAct` subclasses the one here (with its own activations), so `fold_bn`
folds the BNs of any family's extracted net.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["ConvBNAct", "fold_bn"]


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
