"""Train: python train.py [group=option] [key=value]; sweeps with -m (see README)."""

import hydra
from omegaconf import DictConfig

from visionlab.commands.preflight import check_output_folder
from visionlab.commands.resolvers import register_resolvers
from visionlab.config.argv import fix_sys_argv
from visionlab.config.typos import check_override_keys
from visionlab.runs.sweep import check_resume_argument

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from visionlab.commands.preflight import check_train, discard_unused_run_dir, single_run
    from visionlab.errors import InputError
    from visionlab.runs.folder import EarlierRun, RunFolderInUse

    try:
        if single_run():  # a typo fails now, not after seconds of imports and data loading
            check_train(cfg)
        from visionlab.commands.train import run

        return run(cfg)
    except InputError as e:  # the message names the culprit and the fix: no traceback needed
        if not isinstance(e, (EarlierRun, RunFolderInUse)):  # those folders hold another run: never removed
            discard_unused_run_dir(cfg)  # nothing trained: no empty folder left in outputs/train/runs
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    check_override_keys(config_name="train")  # a misspelt key: ours at once, not Hydra's `+key` advice
    fix_sys_argv()  # sweep job paths (model.bn=true,optimizer=sgd) work unquoted
    check_resume_argument()  # a bad resume= fails here, in one line, before Hydra makes any folder
    check_output_folder()  # an output folder that cannot be written: one line, not Hydra's traceback
    main()
