"""Learned latent augmentations (Compressed Vision, 2022): codes cannot be cropped,
flipped or brightened naively (each code stands for a region, and flipping the grid
leaves every region unflipped), so a small network maps codes' latents to the latents of
the augmented clip.

``_ops`` holds the ops (parameter samplers and batched pixel-space reference transforms);
``_network`` the :class:`AugmentationNetwork` and its file; ``_train`` trains it against a
frozen codec (``cvload train-augnet``); ``_latent`` applies it on the device
(:class:`LatentAugment`, a ``gpu_transforms`` entry of :class:`cvload.DataLoader`), with the
naive latent baselines and test-time views; ``_eval`` measures it (``cvload eval-augnet``).
"""

from cvload.augment._eval import evaluate, format_report
from cvload.augment._latent import LatentAugment, naive_crop, naive_flip, test_time_views
from cvload.augment._network import AugmentationNetwork, AugNetConfig
from cvload.augment._ops import (
    OP_NAMES,
    Brightness,
    HorizontalFlip,
    Op,
    OpName,
    RandomResizedCrop,
    Rotation,
    Saturation,
    make_op,
)
from cvload.augment._train import AugTrainResult, apply_ops, train

__all__ = ["OP_NAMES", "AugNetConfig", "AugTrainResult", "AugmentationNetwork", "Brightness",
           "HorizontalFlip", "LatentAugment", "Op", "OpName", "RandomResizedCrop", "Rotation",
           "Saturation", "apply_ops", "evaluate", "format_report", "make_op", "naive_crop",
           "naive_flip", "test_time_views", "train"]
