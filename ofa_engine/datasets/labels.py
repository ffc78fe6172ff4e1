"""Class names of the datasets the engine knows by name (no imports: a family's presets may
name them)."""

from __future__ import annotations

__all__ = ["FASHION_MNIST_LABELS"]

# Fashion-MNIST's classes, in the order of its label indices.
FASHION_MNIST_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
