"""Data: readers (sources: tables, folders, images; fashion_mnist), the split (split), the Dataset
(dataset), augmentation (transforms, batch_augment), the LightningDataModules (datamodule: what they
share; options: the `data` group's options, the `_target_`s of conf/data)."""

from visionlab.data.problems import DataError

# name -> the module defining it; configs and stored checkpoints name them as visionlab.data.<name>
DATAMODULES = {
    "ImageDataModule": "datamodule",
    "ChallengeDataModule": "options",
    "FolderDataModule": "options",
    "FashionMNISTDataModule": "options",
}


def __getattr__(name):  # the datamodules pull in Lightning: import them only when asked for
    if name in DATAMODULES:
        import importlib

        return getattr(importlib.import_module(f"visionlab.data.{DATAMODULES[name]}"), name)
    raise AttributeError(name)


__all__ = [*DATAMODULES, "DataError"]
