from visionlab.data.datamodule import ChallengeDataModule
from visionlab.data.sources import DataError

__all__ = ["ChallengeDataModule", "DataError"]
