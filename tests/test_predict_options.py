"""predict.py's options beyond the submission: output_probs=true, and a --help about predict alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, describe, predict_inproc, run_user


def test_output_probs_writes_every_classs_probability_beside_the_submission(trained, tmp_path, capsys):
    ch, ckpt = trained
    out = predict_inproc(ckpt, tmp_path / "submission.csv", ["output_probs=true"])
    probs = pd.read_csv(tmp_path / "submission_probs.csv", dtype={ch.id_col: str})
    submission = pd.read_csv(out, dtype={ch.id_col: str})
    assert list(probs.columns) == [ch.id_col, *ch.classes]
    assert list(probs[ch.id_col]) == list(submission[ch.id_col])  # the same rows, in the same order
    values = probs[ch.classes].to_numpy()
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-9)
    assert list(np.array(ch.classes)[values.argmax(axis=1)]) == list(submission[ch.label_col])
    assert f"Probabilities (3 classes, rows in the submission's order): {tmp_path / 'submission_probs.csv'}" in (
        capsys.readouterr().out
    )


def test_output_probs_never_overwrites_an_existing_probabilities_file(trained, tmp_path):
    from visionlab.errors import InputError

    ch, ckpt = trained
    (tmp_path / "submission_probs.csv").write_text("mine\n")
    with pytest.raises(InputError, match="submission_probs.csv exists and is kept"):
        predict_inproc(ckpt, tmp_path / "submission.csv", ["output_probs=true"])
    assert (tmp_path / "submission_probs.csv").read_text() == "mine\n"
    assert not (tmp_path / "submission.csv").exists()  # both files or neither


def test_predict_help_lists_what_predict_takes_only(tmp_path):
    proc = run_user(["--help"], tmp_path, script="predict.py")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.startswith("python predict.py ckpt=PATH")
    assert "top_k:" in proc.stdout and "output_probs:" in proc.stdout and "tta:" in proc.stdout
    data_options = ", ".join(sorted(p.stem for p in (REPO / "conf" / "data").glob("*.yaml")))
    assert f"data=OPTION replaces the checkpoint's data config: {data_options}" in proc.stdout
    for group in ("optimizer:", "augmentation:", "experiment:", "callbacks:"):  # training's groups
        assert group not in proc.stdout
