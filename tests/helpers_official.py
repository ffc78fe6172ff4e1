"""What the official-checkpoint tests share (tests/test_official*.py): inputs that a random
network tells apart, BN statistics that keep its activations O(1), a forward pass that also
returns the last feature map, and a tiny ImageNet-style folder to import packages from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["official_input", "calibrate_bn", "run_with_features", "imagenet_folder"]


def official_input(image_size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Images of different statistics: with i.i.d. noise alone, the globally pooled features of
    a random network hardly depend on the input."""
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-2, 2, image_size)
    x = torch.randn(batch, 3, image_size, image_size, generator=gen)
    x[1::2] = 1.5 * x[1::2] + 0.5 * (ramp + ramp[:, None])
    return x


@torch.no_grad()
def calibrate_bn(net: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """Set the BN statistics of an official supernet (`ofa` package) to those of its largest
    subnet on `x`, then eval mode.

    With purely random statistics the signal fades through the 40-odd BN layers and the
    output hardly depends on the input, which would make the comparison weak; and a random
    deep network is chaotic enough that statistics from other images (or perturbed ones) blow
    the largest subnet's activations up to where float32 rounding exceeds the tolerance.
    Smaller subnets read slices of these statistics, which do not match their activations.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: exactly the statistics of `x`
    net.set_max_net()
    net.train()
    net(x)
    net.eval()
    for bn in bns:
        bn.momentum = 0.1
        bn.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=gen)))


def run_with_features(model, features: torch.nn.Module, x: torch.Tensor):
    """(logits, the output of `features`, a layer before the global pooling): the feature map
    shows spatial and input-dependent errors that the pooled logits could average away."""
    seen = []
    handle = features.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, seen[-1]


def imagenet_folder(root: Path, size: int, seed: int = 0) -> Path:
    """`root`/imagenet: 1000 class folders (n00000000 ...) of one noise image each, `size` px,
    pixels like the export check's random batch."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    folder = Path(root) / "imagenet"
    for c in range(1000):
        (folder / f"n{c:08d}").mkdir(parents=True)
        pixels = np.clip(115 + 58 * rng.standard_normal((size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"n{c:08d}" / "0.png", compress_level=0)
    return folder


def check_import_refusals(root: Path, checkpoint: str, wrong_state: dict, wrong_message: str,
                          predictor_message: str, tmp_path: Path, capsys) -> None:
    """`import-official` refuses, with exit code 2, a message and nothing written: a pickle that
    would run code (it never runs), the state dict `wrong_state` (its error contains
    `wrong_message`), and the good checkpoint `root`/`checkpoint` with an accuracy predictor of
    the wrong input width (its error contains `predictor_message`). `root`/imagenet: the images."""
    import os
    import pickle

    from ofa_engine.cli import main
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": wrong_state}, wrong)
    for path, pattern in ((evil, "cannot be read"), (wrong, wrong_message)):
        assert main(["import-official", "--checkpoint", str(path), "--data", str(root / "imagenet"),
                     "--out", str(tmp_path / "pkg")]) == 2
        err = capsys.readouterr().err
        assert "--checkpoint" in err and pattern in err, err
    assert not marker.exists() and not (tmp_path / "pkg").exists()
    bad_predictor = tmp_path / "acc.pth"
    torch.save({"layers.0.0.weight": torch.zeros(400, 7), "layers.0.0.bias": torch.zeros(400),
                "layers.1.weight": torch.zeros(1, 400), "base_acc": torch.zeros(1)}, bad_predictor)
    assert main(["import-official", "--checkpoint", str(root / checkpoint), "--accuracy-predictor",
                 str(bad_predictor), "--data", str(root / "imagenet"), "--out", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err
    assert predictor_message in err, err
    assert not (tmp_path / "pkg").exists()
