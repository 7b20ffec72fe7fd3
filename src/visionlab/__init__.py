"""visionlab: Lightning + Hydra experiments for image-classification challenges."""

__version__ = "0.1.0"
