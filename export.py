"""Export a trained model for serving: python export.py ckpt=PATH format=onnx|torchscript (see README)."""

import hydra
from omegaconf import DictConfig

from visionlab.commands.resolvers import register_resolvers
from visionlab.config.argv import fix_sys_argv

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from visionlab.commands.export import run
    from visionlab.errors import InputError

    try:
        run(cfg)
    except InputError as e:  # the message names the culprit and the fix: no traceback needed
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    fix_sys_argv()  # paths into sweep jobs (ckpt=<sweep>/model.bn=true) work unquoted, as in train/predict
    main()
