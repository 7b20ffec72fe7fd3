"""The `data` group's options: ChallengeDataModule (data=challenge, demo), FolderDataModule
(data=folder) and FashionMNISTDataModule (data=fashion_mnist), each ImageDataModule with its reader."""

from __future__ import annotations

from visionlab.data import fashion_mnist, sources
from visionlab.data.datamodule import ImageDataModule
from visionlab.data.folders import folder_class_names
from visionlab.data.items import Items
from visionlab.data.problems import Problems
from visionlab.data.tables import label_names


class ChallengeDataModule(ImageDataModule):
    """data=challenge (and demo): a training CSV of ids and labels, image folders, a sample submission.

    Args:
        root: the download's folder; the other paths are relative to it.
        train_csv: the training labels (id_col, label_col).
        train_dir, test_dir: the image folders.
        sample_submission: the submission's format and test ids; None: the test folder's files, sorted.
        solution: a CSV with the test labels, if known (test error, predict's accuracy).
        **common: ImageDataModule's keys.
    """

    def __init__(
        self,
        root: str | None,
        train_csv: str = "train.csv",
        train_dir: str = "train",
        test_dir: str = "test",
        sample_submission: str | None = "sample_submission.csv",
        solution: str | None = None,
        **common,
    ):
        super().__init__(root, **common)
        self._require_root()
        self.train_csv, self.train_dir, self.test_dir = train_csv, train_dir, test_dir
        self.sample_submission, self.solution = sample_submission, solution

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        train = self.root / self.train_csv
        names = label_names(train, self.id_col, self.label_col, "Training CSV (data.train_csv)")
        if names is not None:
            return names, f"the labels of training CSV {train}", True
        if self.solution:
            solution = self.root / self.solution
            names = label_names(solution, self.id_col, self.label_col, "Solution file (data.solution)")
            if names is not None:
                return names, f"the labels of solution file {solution}", False
        return None, "", False

    def train_labels_source(self) -> str:
        return f"training CSV {self.root / self.train_csv}"

    def test_labels_source(self) -> str:
        return f"solution file {self.root / self.solution} (data.solution)"

    def read_train(self, problems: Problems | None = None) -> Items:
        return sources.challenge_train(
            self.root,
            self.train_csv,
            self.train_dir,
            self.id_col,
            self.label_col,
            problems,
            skip=self.on_bad_image == "skip",
        )

    def read_test(self, problems: Problems | None = None) -> Items:
        items, self.sample = sources.challenge_test(
            self.root,
            self.test_dir,
            self.sample_submission,
            self.id_col,
            self.solution,
            self.label_col,
            problems,
            skip=self.on_bad_image == "skip",
        )
        return items


class FolderDataModule(ImageDataModule):
    """data=folder: one sub-folder per class, <root>/<train_dir>/<class name>/<image>; test images in
    <root>/<test_dir>.

    Args:
        root: the data folder.
        train_dir, test_dir: relative to root.
        **common: ImageDataModule's keys.
    """

    def __init__(self, root: str | None, train_dir: str = "train", test_dir: str = "test", **common):
        super().__init__(root, **common)
        self._require_root()
        self.train_dir, self.test_dir = train_dir, test_dir

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        names = folder_class_names(self.root, self.train_dir)
        return names, f"the class folders of {self.root / self.train_dir}", names is not None

    def train_labels_source(self) -> str:
        return f"the class folders of {self.root / self.train_dir}"

    def read_train(self, problems: Problems | None = None) -> Items:
        return sources.folder_train(self.root, self.train_dir, problems, skip=self.on_bad_image == "skip")

    def read_test(self, problems: Problems | None = None) -> Items:
        items, _ = sources.challenge_test(
            self.root, self.test_dir, None, self.id_col, problems=problems, skip=self.on_bad_image == "skip"
        )
        return items


class FashionMNISTDataModule(ImageDataModule):
    """data=fashion_mnist: the full 60k / 10k Fashion-MNIST from its idx files (data/fashion_mnist.py).

    Args:
        root: a folder holding the idx files; None: Debian's dataset-fashion-mnist package.
        download: fetch them with torchvision when no copy is found (needs the internet).
        **common: ImageDataModule's keys.
    """

    def __init__(self, root: str | None = None, download: bool = False, **common):
        super().__init__(root, **common)
        self.download = download

    def known_classes(self) -> tuple[set[str] | None, str, bool]:
        return set(fashion_mnist.CLASSES), "Fashion-MNIST's ten classes", True

    def read_train(self, problems: Problems | None = None) -> Items:
        return fashion_mnist.read(None if self.root is None else str(self.root), "train", self.download)

    def read_test(self, problems: Problems | None = None) -> Items:
        return fashion_mnist.read(None if self.root is None else str(self.root), "test", self.download)

    def has_test_images(self) -> bool:
        return True  # the official test split
