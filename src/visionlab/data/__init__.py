"""Data: readers (sources, fashion_mnist), augmentation (transforms), the LightningDataModules of the
`data` group's options (datamodule)."""

from visionlab.data.sources import DataError

DATAMODULES = ("ImageDataModule", "ChallengeDataModule", "FolderDataModule", "FashionMNISTDataModule")


def __getattr__(name):  # the datamodules pull in Lightning: import them only when asked for
    if name in DATAMODULES:
        from visionlab.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(name)


__all__ = [*DATAMODULES, "DataError"]
