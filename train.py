"""Train: python train.py [group=option] [key=value]; sweeps with -m (see README)."""

import hydra
from omegaconf import DictConfig

from visionlab.sweep import check_resume_argument, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from visionlab.errors import InputError
    from visionlab.train import run

    try:
        return run(cfg)
    except InputError as e:  # the message names the culprit and the fix: no traceback needed
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    check_resume_argument()  # a bad resume= fails here, in one line, before Hydra makes any folder
    main()
