"""Human-readable labels for a model's outputs, for apps and `classify`.

`class_names` (checkpoint metadata, manifest model.class_names) are the training data's class
FOLDER names, which eval matches against a data folder's sub-folders: for ImageNet these are
synset ids (n01440764). `labels` are what a person reads: the folder names for our own nets, and
for 1000-class checkpoints without names (the official ImageNet-1k releases) the ImageNet-1k
category names torchvision ships with its weights' metadata (never downloaded).
"""
from __future__ import annotations

IMAGENET_CLASSES = 1000


def labels_for(class_names: list[str] | None, num_classes: int) -> tuple[list[str] | None, str | None]:
    """(labels, where they come from), or (None, None) when nothing names the outputs."""
    if class_names and len(class_names) == num_classes:
        return list(class_names), "class_names"
    if num_classes == IMAGENET_CLASSES:
        from torchvision.models._meta import _IMAGENET_CATEGORIES

        return list(_IMAGENET_CATEGORIES), "ImageNet-1k (torchvision.models._meta)"
    return None, None
