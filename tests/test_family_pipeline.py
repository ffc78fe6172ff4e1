"""The pipeline and the runtime reach a network family only through `family_of` (issue 35): MACs
measured on an extracted subnet are the family's count (which sees attention's matrix products),
equal on MobileNetV3 to the forward hooks it replaced and to `analyze`; specialize reports the
same subnet and counts as before; every registered family's subnets export to verified ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ofa_engine.families import FAMILIES, family_named, family_of


def _hook_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of every Conv2d and Linear of one forward pass (the counter that
    specialize used before the family's, kept here as an independent reference)."""
    total = [0]

    def conv_hook(m: nn.Conv2d, inputs, output) -> None:
        total[0] += output.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, inputs, output) -> None:
        total[0] += output.numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def test_family_count_macs_equals_analyze_and_the_old_hooks():
    from ofa_engine.runtime.export import untrained_supernet
    family = family_of("tiny-fmnist")
    space = family.space
    supernet = untrained_supernet(space)
    rng = np.random.default_rng(0)
    for _ in range(10):
        cfg = space.sample(rng)
        net = supernet.extract(cfg).eval()
        counted = family.count_macs(net, cfg)
        assert counted == int(family.analyze(cfg)["macs"]) == _hook_macs(net, family.input_shape(cfg)), cfg


@pytest.mark.parametrize("name", sorted(FAMILIES.names()))
def test_count_macs_is_the_flop_counters_number(name):
    """A family counting MACs with layer hooks (`products_in_layers`: the CNNs) gets PyTorch's
    FLOP counter's number on its subnets (the ViT counts with the FLOP counter itself)."""
    from ofa_engine.runtime.export import untrained_supernet
    family = family_of(family_named(name).preset_names()[0], fast=False)
    space = family.space
    supernet = untrained_supernet(space)
    smallest = space.smallest()
    for cfg in (smallest, space.sample(np.random.default_rng(1))):
        # at the smallest resolution (the counts' rules do not depend on it; ImageNet nets run faster)
        cfg = family.validate({**family.config_to_dict(cfg), "image_size": family.config_to_dict(smallest)["image_size"]})
        net = supernet.extract(cfg).eval()
        assert family.count_macs(net, cfg) == _flop_counter_macs(net, family.input_shape(cfg)), cfg


def _flop_counter_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *shape))
    return int(counter.get_total_flops()) // 2


def test_specialize_report_keeps_its_subnet_and_counts():
    from ofa_engine.pipeline.specialize import specialize
    report = specialize("cpu-ort-1t", {"latency_ms": 0.35}, "evolution", seed=0, precision="fp32").report
    # The values of this call before specialize went through the family (commit 3ef85ff).
    assert report["config"] == {"wid": 1, "ks": [5, 7, 7, 5, 5, 3, 5, 5, 5, 7, 5, 3, 7, 5, 3],
                                "e": [6, 4, 6, 6, 4, 4, 6, 3, 3, 3, 3, 4, 3, 3, 6],
                                "d": [3, 2, 2, 2, 2], "image_size": 24}
    assert report["measured"]["macs"] == 2445048
    assert report["measured"]["params"] == 354522
    analytic = family_of("tiny-fmnist").analyze(report["config"])
    assert (report["measured"]["macs"], report["measured"]["params"]) == (analytic["macs"], analytic["params"])


@pytest.mark.parametrize("name", sorted(FAMILIES.names()))
def test_every_family_exports_verified_onnx(tmp_path, name):
    """The export path is family-neutral: a subnet of each family's first preset is written as
    fp32 and int8 files that ONNX Runtime reproduces, with its config and space in the metadata."""
    from ofa_engine.runtime.export import export_subnets, read_metadata
    family = family_of(family_named(name).preset_names()[0], fast=False)
    cfg = family.space.smallest()
    for precision in ("fp32", "int8"):
        (path,) = export_subnets(family.space, [cfg], [tmp_path / f"{precision}.onnx"], precision=precision)
        meta = read_metadata(path)
        assert meta["config"] == family.config_to_dict(cfg)
        assert meta["space"] == family.space.name
        assert len(meta["labels"]) == family.space.num_classes
        if precision == "int8":
            assert meta["precision"] == "int8"
