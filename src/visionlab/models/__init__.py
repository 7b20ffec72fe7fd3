from visionlab.models.classifier import ImageClassifier
from visionlab.models.cnn import build_cnn
from visionlab.models.init import apply_init

__all__ = ["ImageClassifier", "build_cnn", "apply_init"]
