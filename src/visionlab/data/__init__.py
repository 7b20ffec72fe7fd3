"""Data: readers (sources), augmentation (transforms), the LightningDataModule (datamodule)."""

from visionlab.data.sources import DataError


def __getattr__(name):  # the datamodule pulls in Lightning: import it only when asked for
    if name == "ChallengeDataModule":
        from visionlab.data.datamodule import ChallengeDataModule

        return ChallengeDataModule
    raise AttributeError(name)


__all__ = ["ChallengeDataModule", "DataError"]
