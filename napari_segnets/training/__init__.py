"""Training: slice datasets, seeded augmentation, ignore-aware losses and the training loop.

``train_iter`` is a generator of progress events (cancel by closing it); ``train`` is its plain
twin. ``finetune`` starts from a parent checkpoint and records it. ``fit_pca_iter`` fits the
PCA autoencoder in closed form with the same events and result. Torch is imported lazily.
"""

from .augment import Augmenter
from .datasets import CropSampler, SliceDataset
from .finetune import finetune, finetune_iter
from .loop import TrainResult, train, train_iter
from .losses import LOSSES, make_loss
from .pca_fit import fit_pca_iter

__all__ = [
    "Augmenter",
    "CropSampler",
    "LOSSES",
    "SliceDataset",
    "TrainResult",
    "finetune",
    "finetune_iter",
    "fit_pca_iter",
    "make_loss",
    "train",
    "train_iter",
]
