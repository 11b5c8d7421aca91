"""Small model fixtures shared by the CLI, distributed and inference tests."""

from __future__ import annotations


def calibrated_unet(image, task="segment"):
    """A tiny random U-Net whose batch-norm statistics fit ``image``, so its output varies."""
    import torch

    from napari_segnets.models import build

    torch.manual_seed(0)
    model = build("unet", task=task, base=8, depth=2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration pass
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(image[:, None, :64, :64].astype("float32") / 255))
        head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        head.weight.mul_(3)
    return model.eval()
