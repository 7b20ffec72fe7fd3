"""Issue #12 part 5: `python train.py --help` stays off the heavy imports (torch, Lightning, pandas)."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO, cli_env


def test_help_imports_neither_torch_nor_lightning_nor_pandas(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "train.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 0 and "== Configuration groups ==" in proc.stdout, proc.stdout[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported  # the measurement works
    assert not {"torch", "pytorch_lightning", "pandas"} & imported, sorted(
        imported & {"torch", "pytorch_lightning", "pandas"}
    )
