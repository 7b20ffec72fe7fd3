"""python export.py: ONNX and TorchScript files that take uint8 images and return the probabilities
predict.py computes, with the classes and preprocessing in a JSON beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx  # the dev extra installs onnx and onnxruntime (the export extra)
import onnxruntime as ort
import pytest
import torch
from helpers import DEMO, assert_user_error, challenge_overrides, compose_cfg, run_cli, run_user, train_inproc

from visionlab.commands.predict import load_checkpoint, restore_model
from visionlab.data.images import load_image
from visionlab.errors import InputError


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, Path]:
    """A single real run on the demo challenge, named with name=; returns (cwd, run folder)."""
    cwd = tmp_path_factory.mktemp("export")
    run_cli(["data.subset=300", "trainer.max_epochs=1", "name=export me"], cwd)
    (run_dir,) = (cwd / "outputs" / "train" / "runs").iterdir()
    return cwd, run_dir


def demo_images(image_size: int, interpolation: str, n: int) -> torch.Tensor:
    """Real demo test images, resized as the exported JSON says (what a server would do)."""
    files = sorted((DEMO / "test").iterdir())[:n]
    return torch.from_numpy(np.stack([load_image(f, image_size, interpolation) for f in files])).permute(0, 3, 1, 2)


def pytorch_probabilities(ckpt: Path, images: torch.Tensor) -> np.ndarray:
    """What predict.py computes: the model rebuilt from the checkpoint, probabilities of its output."""
    model = restore_model(load_checkpoint(ckpt))
    with torch.no_grad():
        return model.probabilities(model(images)).numpy()


def run_model(path: Path, images: torch.Tensor) -> np.ndarray:
    if path.suffix == ".onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(images).numpy()


def check_export(model_file: Path, ckpt: Path) -> dict:
    meta = json.loads(model_file.with_suffix(".json").read_text())
    info = load_checkpoint(ckpt)["visionlab"]
    assert meta["classes"] == info["classes"]
    pre = meta["preprocessing"]
    assert (pre["image_size"], pre["interpolation"]) == (info["image_size"], info["interpolation"])
    assert pre["mean"] == pytest.approx(info["mean"]) and pre["std"] == pytest.approx(info["std"])
    for n in (7, 1):  # any batch size: the batch axis is dynamic
        images = demo_images(pre["image_size"], pre["interpolation"], n)
        got = run_model(model_file, images)
        assert got.shape == (n, len(meta["classes"]))
        np.testing.assert_allclose(got, pytorch_probabilities(ckpt, images), atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    return meta


# ----------------------------------------------------------------------------- through the entry point


@pytest.mark.slow
def test_single_run_folder_carries_its_name(demo_run):
    _, run_dir = demo_run
    assert run_dir.name.endswith("_export-me"), run_dir.name  # name=export me


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_like_pytorch(demo_run, tmp_path):
    cwd, run_dir = demo_run
    out = tmp_path / "served" / "fashion.onnx"
    proc = run_cli([f"ckpt={run_dir}", "format=onnx", f"output={out}"], cwd, script="export.py")
    assert "check: onnx and PyTorch agree" in proc.stdout
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    meta = check_export(out, ckpt)
    assert meta["format"] == "onnx" and meta["model"] == "fashion.onnx" and meta["checkpoint"] == str(ckpt.resolve())
    model = onnx.load(str(out))
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 28, 28]
    # the weights are inside the file, not in external data files beside it
    n_params = sum(v.numel() for k, v in load_checkpoint(ckpt)["state_dict"].items() if k.startswith("net."))
    weights = sum(np.prod(t.dims) for t in model.graph.initializer if not t.external_data)
    assert weights >= 0.99 * n_params - 1000  # BN may be folded into the convolutions
    assert sorted(p.name for p in out.parent.iterdir()) == ["fashion.json", "fashion.onnx"]


@pytest.mark.slow
def test_torchscript_export_to_the_default_folder(demo_run):
    cwd, run_dir = demo_run
    run_cli([f"ckpt={run_dir / 'checkpoints' / 'best.ckpt'}", "format=torchscript"], cwd, script="export.py")
    (model_file,) = (cwd / "outputs" / "export").glob("*/model.pt")
    meta = check_export(model_file, run_dir / "checkpoints" / "best.ckpt")
    assert meta["format"] == "torchscript" and meta["input"]["dtype"] == "uint8"


@pytest.mark.slow
def test_export_never_overwrites_without_overwrite_true(demo_run, tmp_path):
    cwd, run_dir = demo_run
    out = tmp_path / "model.onnx"
    export_inproc(tmp_path / "x", [f"ckpt={run_dir}", f"output={out}", "check=false"])
    before = out.read_bytes(), out.with_suffix(".json").read_text()
    message = assert_user_error(
        run_user([f"ckpt={run_dir}", f"output={out}"], cwd, script="export.py"), str(out), "overwrite=true"
    )
    assert message.strip().count("\n") == 0  # one line
    assert (out.read_bytes(), out.with_suffix(".json").read_text()) == before
    out.unlink()  # the JSON alone is kept too
    with pytest.raises(InputError, match=f"{out.with_suffix('.json')} exists and is kept"):
        export_inproc(tmp_path / "x", [f"ckpt={run_dir}", f"output={out}"])
    assert not out.exists()
    export_inproc(tmp_path / "x", [f"ckpt={run_dir}", f"output={out}", "overwrite=true"])
    check_export(out, run_dir / "checkpoints" / "best.ckpt")


# ----------------------------------------------------------------------------- in-process: other models, bad input


def export_inproc(out_dir: Path, overrides: list[str]) -> Path:
    from visionlab.commands.export import run

    return run(compose_cfg("export", [f"paths.output_dir={out_dir}"] + overrides))


@pytest.mark.parametrize(
    "model",
    [["model.output=sigmoid"], ["model=timm", "model.name=efficientnet_lite0"]],
    ids=["cnn_sigmoid", "timm_lite0"],
)
def test_other_outputs_and_timm_backbones_export(make_challenge, tmp_path, model):
    ch = make_challenge()
    image_size = 32
    train_inproc(tmp_path / "run", challenge_overrides(ch, image_size) + ["trainer.max_epochs=1"] + model)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    for fmt in ("onnx", "torchscript"):
        out = export_inproc(tmp_path / fmt, [f"ckpt={tmp_path / 'run'}", f"format={fmt}"])
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["classes"] == ch.classes and meta["input"]["shape"] == ["batch", 3, image_size, image_size]
        files = sorted((ch.root / "test").iterdir())[:5]
        images = torch.from_numpy(
            np.stack([load_image(f, image_size, meta["preprocessing"]["interpolation"]) for f in files])
        ).permute(0, 3, 1, 2)
        np.testing.assert_allclose(run_model(out, images), pytorch_probabilities(ckpt, images), atol=1e-5, rtol=1e-4)


def test_bad_export_arguments_name_the_key(tmp_path, make_challenge):
    with pytest.raises(InputError, match="format='tflite' is not one of"):
        export_inproc(tmp_path, ["ckpt=x.ckpt", "format=tflite"])
    with pytest.raises(InputError, match="ckpt='missing.ckpt' does not exist"):
        export_inproc(tmp_path, ["ckpt=missing.ckpt"])
    with pytest.raises(InputError, match="names several checkpoints; export one model"):
        export_inproc(tmp_path, ["ckpt=[a.ckpt,b.ckpt]"])
    with pytest.raises(InputError, match="no checkpoint given"):
        export_inproc(tmp_path, [])
    sweep = tmp_path / "sweep"
    for job in ("a=1", "a=2"):
        (sweep / job / "checkpoints").mkdir(parents=True)
        (sweep / job / "checkpoints" / "best.ckpt").write_bytes(b"")
    with pytest.raises(InputError, match="sweep folder of 2 jobs; export one model"):
        export_inproc(tmp_path, [f"ckpt={sweep}"])
