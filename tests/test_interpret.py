"""Pictures and names in TensorBoard: a real small sweep on the demo challenge logs a training batch,
confusion matrices and top losses per run; a real `tensorboard` server lists its runs and curves;
the report carries the best run's confusion matrix; single runs get readable folder names."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, cli_env, run_cli
from PIL import Image

from visionlab import report
from visionlab.commands.resolvers import register_resolvers
from visionlab.training import interpret

RUNS = {"model.bn=true", "model.bn=false"}
SCALARS = {"train/loss", "train/err", "val/loss", "val/err"}
IMAGES = {"images/train_batch", "images/confusion_matrix_val", "images/top_losses_val", "images/confusion_matrix_test"}
DEMO_TEST_IMAGES = 484


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("interpret_sweep")
    run_cli(["-m", "model.bn=true,false", "data.subset=300", "trainer.max_epochs=2"], cwd)
    (sweep_dir,) = (cwd / "outputs" / "train" / "multiruns").iterdir()
    return sweep_dir


def accumulator(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def logged_counts(acc, split: str) -> np.ndarray:
    text = acc.Tensors(f"confusion_matrix_{split}/text_summary")[-1].tensor_proto.string_val[0].decode()
    return interpret.parse_confusion_markdown(text)


# ----------------------------------------------------------------------------- item 9: pictures


@pytest.mark.slow
def test_every_run_logs_batch_confusion_matrices_and_top_losses(sweep):
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == RUNS
    for name in RUNS:
        run = sweep / name
        acc = accumulator(run)
        assert IMAGES <= set(acc.Tags()["images"]), (name, acc.Tags()["images"])
        for tag in IMAGES:
            (event,) = acc.Images(tag)  # one picture each
            with Image.open(io.BytesIO(event.encoded_image_string)) as im:
                assert im.format == "PNG" and im.width >= 300 and im.height >= 300, (tag, im.size)
                assert np.asarray(im.convert("L")).std() > 10  # a picture, not a blank canvas
        assert acc.Images("images/train_batch")[0].step == 0  # at the start of training
        result = json.loads((run / "result.json").read_text())
        # The val confusion matrix is the best checkpoint's: its accuracy is 1 - the best val error.
        val = logged_counts(acc, "val")
        assert val.shape == (10, 10)
        assert np.trace(val) / val.sum() == pytest.approx(1 - result["best_val_err"], abs=1e-6)
        # The test matrix comes from train.py's test of best.ckpt, on every labelled demo test image.
        test = logged_counts(acc, "test")
        assert test.sum() == DEMO_TEST_IMAGES
        assert np.trace(test) / test.sum() == pytest.approx(1 - result["test_err"], abs=1e-6)


def test_top_mistakes_keeps_the_most_confident_wrong_predictions():
    top = interpret.TopMistakes(k=3)
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.4, 0.6], [0.6, 0.4]])
    top.update(images[:3], labels[:3], probs[:3])  # wrong: #1 (0.8)
    top.update(images[3:], labels[3:], probs[3:])  # wrong: #3 (0.95), #4 (0.6), #5 (0.6)
    assert top.conf.tolist() == pytest.approx([0.95, 0.8, 0.6])
    assert top.images[:, 0, 0, 0].tolist() == [3, 1, 4]  # images travel with their predictions
    assert top.true.tolist() == [1, 0, 0] and top.pred.tolist() == [0, 1, 1]


def test_confusion_markdown_round_trip():
    counts = np.array([[3, 1, 0], [0, 2, 5], [7, 0, 1]])
    text = interpret.confusion_markdown(counts, ["a | b", "dog", "cat"])
    assert (interpret.parse_confusion_markdown(text) == counts).all()


# ----------------------------------------------------------------------------- item 9: the report


@pytest.mark.slow
def test_report_has_the_best_runs_confusion_matrix(sweep, tmp_path):
    assert report.main([str(sweep), "--out", str(tmp_path)]) == 0
    results = {name: json.loads((sweep / name / "result.json").read_text()) for name in RUNS}
    best = min(RUNS, key=lambda n: (results[n]["best_val_err"], n))
    png = (tmp_path / "confusion_matrix.png").read_bytes()
    assert png == accumulator(sweep / best).Images("images/confusion_matrix_val")[-1].encoded_image_string
    md = (tmp_path / "results.md").read_text()
    assert f"`{best}`" in md and "![](confusion_matrix.png)" in md


def _synthetic_sweep(root: Path, n: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    for i in range(n):
        run = root / f"model.channels=[{8 * (i + 1)},{16 * (i + 1)}],optimizer.lr=0.00{i + 1}"
        run.mkdir(parents=True)
        with SummaryWriter(log_dir=str(run)) as w:
            for epoch in range(6):
                w.add_scalar("train/err", 0.5 / (epoch + 1) + 0.01 * i, epoch)
                w.add_scalar("val/err", 0.6 / (epoch + 1) + 0.01 * i, epoch)
        (run / "result.json").write_text(json.dumps({"run": run.name, "status": "completed"}))
    return root


@pytest.mark.parametrize("n", [3, 12])
def test_errors_legend_sits_below_the_axes(tmp_path, n):
    runs, keys = report.load_sweep(_synthetic_sweep(tmp_path / "sweep", n))
    plotter = report.SweepPlotter(runs, keys)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plotter.combined_figure()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    (legend,) = fig.legends
    box, axes_box = legend.get_window_extent(renderer), ax.get_tightbbox(renderer)
    assert box.y1 <= axes_box.y0 + 1, (box, axes_box)  # below the axes and their tick labels
    assert 0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y0 >= 0  # and inside the picture
    texts = [t.get_text() for t in legend.get_texts()]
    assert sorted({r["setting"] for r in runs}) == sorted(texts[:n]) and texts[n:] == ["train", "validation"]
    paths = report.write_plots(runs, keys, tmp_path)
    assert all(p.is_file() for p in paths.values())


# ----------------------------------------------------------------------------- item 10: TensorBoard as users open it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_tensorboard_server_shows_one_run_per_job_with_its_curves(sweep):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # `timeout` ends the server by itself even if this test dies; the finally kills it sooner.
    proc = subprocess.Popen(
        [
            "timeout",
            "120",
            "tensorboard",
            "--logdir",
            str(sweep),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
        start_new_session=True,
    )
    try:
        deadline, runs, tags, error = time.time() + 90, [], {}, None
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                runs = _get_json(f"{base}/data/runs")
                tags = _get_json(f"{base}/data/plugin/scalars/tags")
                if set(runs) == RUNS and all(SCALARS <= set(tags.get(r, {})) for r in RUNS):
                    break
            except OSError as e:  # not listening yet
                error = e
            time.sleep(1)
        assert set(runs) == RUNS, (runs, error)
        for run in RUNS:
            assert SCALARS <= set(tags[run]), (run, tags[run])
        images = _get_json(f"{base}/data/plugin/images/tags")
        for run in RUNS:
            assert IMAGES <= set(images[run]), (run, images[run])
        points = _get_json(f"{base}/data/plugin/scalars/scalars?run=model.bn%3Dtrue&tag=val%2Ferr")
        assert [step for _, step, _ in points] == [0, 1]  # one point per epoch, x = epoch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: timeout and its tensorboard
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- item 10: single-run names


def run_dir_for(overrides: list[str]) -> str:
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return str(compose("train", overrides=overrides, return_hydra_config=True).hydra.run.dir)


def test_single_run_folder_says_its_overrides_or_name():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plain = run_dir_for([])
    assert plain.startswith("outputs/train/runs/") and plain.count("_") == 2  # <date>_<time>_<token>, as before
    named = run_dir_for(["model.bn=false", "trainer.max_epochs=2", "data.root=/somewhere/flowers/"])
    assert named.startswith("outputs/train/runs/")
    assert named.endswith("_model.bn-false_trainer.max_epochs-2_data.root-flowers"), named
    assert run_dir_for(["name=my baseline", "model.bn=false"]).endswith("_my-baseline")
    long = run_dir_for([f"model.channels=[{','.join(['64'] * 40)}]"])
    assert len(Path(long).name) == len("2026-01-01_00-00-00_abcdef") + 1 + 80  # shortened, a hash keeps it apart
    # a folder pastes unquoted into resume= / ckpt= (Hydra would reject `=` or `,` in a value)
    for path in (named, long):
        (parsed,) = OverridesParser.create().parse_overrides([f"resume={path}"])
        assert parsed.value() == path
