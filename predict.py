"""Predict the test set and write the submission: python predict.py ckpt=PATH (see README)."""

import hydra
from omegaconf import DictConfig

from visionlab.commands.resolvers import register_resolvers
from visionlab.config.argv import fix_sys_argv
from visionlab.config.typos import check_override_keys

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from visionlab.commands.preflight import check_predict, discard_unused_run_dir
    from visionlab.errors import InputError

    try:
        check_predict(cfg)  # a missing ckpt= or a kept output= fails now, before seconds of imports
        from visionlab.commands.predict import run

        run(cfg)
    except InputError as e:  # the message names the culprit and the fix: no traceback needed
        discard_unused_run_dir(cfg)
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    check_override_keys(config_name="predict")  # a misspelt key: ours at once, not Hydra's `+key` advice
    fix_sys_argv()  # paths into sweep jobs (model.bn=true,optimizer=sgd) work unquoted
    main()
