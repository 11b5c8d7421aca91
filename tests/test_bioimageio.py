"""BioImage Model Zoo packages: export checked by the zoo's own tools, import, round trip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_segnets import checkpoints  # noqa: E402
from napari_segnets.bioimageio import export_package, load_package  # noqa: E402
from napari_segnets.errors import CheckpointError, InputError  # noqa: E402
from napari_segnets.inference import predict  # noqa: E402
from napari_segnets.models import build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NUCLEI = Path(__file__).parent / "data" / "bioimageio" / "unet2d_nuclei_broad"
META = {
    "normalization": {"mode": "percentile", "low": 1.0, "high": 99.8},
    "history": [{"epoch": 1, "loss": 0.5, "val_iou": 0.7}],
    "class_names": None,
}
# One package per architecture family and task. ONNX export takes ~20 s per model here, so
# only the first case carries it; the zoo's test runs every weight format a package holds.
CASES = {
    "unet-segment": ("unet", {"base": 4, "depth": 2}, ("pytorch_state_dict", "torchscript", "onnx")),
    "atrous-segment-3": ("atrous", {"base": 4, "classes": 3}, ("pytorch_state_dict", "torchscript")),
    "fcn8s-segment": ("fcn8s", {"base": 4}, ("pytorch_state_dict", "torchscript")),
    "unet-autoencode": ("unet", {"base": 4, "depth": 2, "task": "autoencode"}, ("pytorch_state_dict",)),
    "atrous-autoencode": ("atrous", {"base": 4, "task": "autoencode"}, ("pytorch_state_dict",)),
    "fcn8s-autoencode": ("fcn8s", {"base": 4, "task": "autoencode"}, ("pytorch_state_dict",)),
}


def _calibrated(arch, kw):
    """A small random model whose batch norms fit EM-like input, so its output is not flat."""
    from napari_segnets.sample_data import synthetic_stack

    torch.manual_seed(0)
    model = build(arch, **kw)
    image, _ = synthetic_stack((2, 96, 96), seed=1)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)[:, None] / 255.0)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.fixture(scope="module", params=list(CASES))
def package(request, tmp_path_factory, one_torch_thread):
    arch, kw, weights = CASES[request.param]
    model = _calibrated(arch, kw)
    folder = tmp_path_factory.mktemp(request.param)
    ckpt = checkpoints.save(folder / "model.safetensors", model, dict(META, parent=None))
    path = export_package(ckpt, folder / "model.zip", license="MIT", authors=["A. Tester"],
                          data_name="EPFL/Lucchi", data_url="https://www.epfl.ch/labs/cvlab/data/data-em/",
                          weights=weights)  # fmt: skip
    return request.param, ckpt, path


def test_bioimageio_core_reproduces_the_test_outputs(package):
    test_model = pytest.importorskip("bioimageio.core").test_model

    name, _, path = package
    summary = test_model(path)
    failed = [(d.name, [e.msg[:300] for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    formats = {d.name.split("(")[-1].rstrip(")") for d in summary.details if "Reproduce" in d.name}
    assert formats == set(CASES[name][2])


def test_package_describes_the_model(package):
    import yaml

    name, ckpt, path = package
    with zipfile.ZipFile(path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        assert {"cover.png", "README.md", "test_input.npy", "test_output.npy", "weights.pt"} <= set(zf.namelist())
    meta = checkpoints.read_metadata(ckpt)
    model, _ = checkpoints.load(ckpt)
    assert rdf["format_version"].startswith("0.5") and rdf["license"] == "MIT"
    space = [a for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert all(a["size"]["step"] == model.size_multiple for a in space)
    assert all(a["size"]["min"] >= 2 * model.halo for a in space)
    out_space = [a for a in rdf["outputs"][0]["axes"] if a["type"] == "space"]
    assert all(a.get("halo", 0) == model.halo for a in out_space)
    pre = [op["id"] for op in rdf["inputs"][0]["preprocessing"]]
    assert pre == ["ensure_dtype", "scale_range", "clip"]
    post = [op["id"] for op in rdf["outputs"][0]["postprocessing"]]
    expected = [] if name.endswith("autoencode") else ["softmax"] if name == "atrous-segment-3" else ["sigmoid"]
    assert post == expected
    ours = rdf["config"]["napari_segnets"]
    assert ours["content_hash"] == meta["content_hash"] and ours["history"] == META["history"]
    assert ours["training_data"]["name"] == "EPFL/Lucchi"
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == ("napari_segnets.models", "build")
    assert arch["kwargs"] == model.config
    assert any("Training data" in c["text"] for c in rdf["cite"])
    light = checkpoints.read_metadata(path)  # what the GUI reads when a package is picked
    assert (light["task"], light["content_hash"]) == (model.task, meta["content_hash"])


def _image():
    from napari_segnets.sample_data import synthetic_stack

    image, _ = synthetic_stack((2, 150, 170), seed=3)
    return image


def test_round_trip_gives_the_native_output(package):
    name, ckpt, path = package
    native, meta = checkpoints.load(ckpt)
    loaded, zmeta = checkpoints.load(path)  # the project's own state dict: the native model again
    assert type(loaded) is type(native) and zmeta["content_hash"] == meta["content_hash"]
    assert zmeta["normalization"] == meta["normalization"] and zmeta["history"] == meta["history"]
    image = _image()
    output = "reconstruction" if "autoencode" in name else "probabilities"
    ref = predict(native, image, normalization=meta["normalization"], output=output)
    got = predict(loaded, image, normalization=zmeta["normalization"], output=output)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_formats_run_like_the_native_model(package, fmt):
    name, ckpt, path = package
    if fmt not in CASES[name][2]:
        pytest.skip(f"{name} is packaged without {fmt}")
    native, meta = checkpoints.load(ckpt)
    zoo, zmeta = load_package(path, weight_format=fmt, allow_torchscript=True)
    assert type(zoo).__name__ == "ZooModel" and zoo.halo == native.halo
    image = _image()
    # float32 on both sides: the package's tolerance is for its float32 test tensors (predict's
    # default bf16 autocast on CPUs that have it differs from float32 by more)
    ref = predict(native, image, normalization=meta["normalization"], amp=False)
    got = predict(zoo, image, normalization=zmeta["normalization"], amp=False)
    tol = zmeta["bioimageio"]["tolerance"]
    np.testing.assert_allclose(got, ref, rtol=tol["relative_tolerance"], atol=tol["absolute_tolerance"])


def test_torchscript_needs_an_explicit_opt_in(package):
    name, _, path = package
    if "torchscript" not in CASES[name][2]:
        pytest.skip("no torchscript weights")
    with pytest.raises(CheckpointError, match="allow_torchscript"):
        load_package(path, weight_format="torchscript")


def _nuclei(tmp_path) -> Path:
    """The zoo's example package (ONNX weights by bioimageio.core) rebuilt as a folder."""
    folder = tmp_path / "unet2d_nuclei_broad"
    folder.mkdir()
    for name in ("bioimageio.yaml", "README.md", "weights.onnx"):
        (folder / name).write_bytes((NUCLEI / name).read_bytes())
    with np.load(NUCLEI / "test_tensors.npz") as f:
        np.save(folder / "test_input.npy", f["test_input"].astype(np.float32))
        np.save(folder / "test_output.npy", f["test_output"])
    return folder


def test_foreign_package_reproduces_its_test_output(tmp_path):
    import hashlib

    import yaml

    folder = _nuclei(tmp_path)
    rdf = yaml.safe_load((folder / "bioimageio.yaml").read_text())
    for tensor in (rdf["inputs"][0], rdf["outputs"][0]):  # the rebuilt files are the originals
        data = (folder / tensor["test_tensor"]["source"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == tensor["test_tensor"]["sha256"]
    model, meta = checkpoints.load(folder)
    assert meta["bioimageio"]["weight_format"] == "onnx"
    assert meta["normalization"]["mode"] == "meanstd" and meta["normalization"]["clip"] is None
    assert (model.max_tile, model.halo, model.out_channels) == (512, 32, 1)
    x = np.load(folder / "test_input.npy")[0, 0]
    expected = np.load(folder / "test_output.npy")[0, 0]
    one = predict(model, x, tile=512, halo=0, blend="none", normalization=meta["normalization"])
    tol = meta["bioimageio"]["tolerance"]
    np.testing.assert_allclose(one, expected, rtol=tol["relative_tolerance"], atol=tol["absolute_tolerance"])
    # Tiled with its declared halo (32; its true reach is larger): close away from the borders.
    tiled = predict(model, x[:300, :280], tile=256, normalization=meta["normalization"])
    assert np.isfinite(tiled).all() and tiled.shape == (300, 280)


def test_foreign_package_through_the_cli(tmp_path, capsys):
    import tifffile

    from napari_segnets._cli import main

    folder = _nuclei(tmp_path)
    x = np.load(folder / "test_input.npy")[0, 0].astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", x[:256, :256])
    rc = main(["predict", "--checkpoint", str(folder), "--input", str(tmp_path / "in.tif"),
               "--out", str(tmp_path / "out.tif"), "--output", "probabilities", "--no-progress"])  # fmt: skip
    assert rc == 0
    y = tifffile.imread(tmp_path / "out.tif")
    assert y.shape == (256, 256) and 0 <= y.min() and y.max() <= 1


def test_foreign_state_dict_is_refused_with_the_formats_named(tmp_path):
    import yaml

    folder = _nuclei(tmp_path)
    rdf = yaml.safe_load((folder / "bioimageio.yaml").read_text())
    del rdf["weights"]["onnx"]
    (folder / "bioimageio.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(CheckpointError, match="outside napari-segnets.*torchscript"):
        checkpoints.load(folder)


class _Boom:
    def __reduce__(self):
        return (Path("/nonexistent-zoo-marker").touch, ())


def test_pickled_code_in_a_state_dict_never_runs(package, tmp_path):
    import hashlib

    import yaml

    _, _, path = package
    buf = io.BytesIO()
    torch.save({"w": _Boom()}, buf)
    evil = buf.getvalue()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "weights.pt":
                data = evil
            elif item == "rdf.yaml":  # a consistent package: the hash matches the pickle
                rdf = yaml.safe_load(data)
                rdf["weights"]["pytorch_state_dict"]["sha256"] = hashlib.sha256(evil).hexdigest()
                data = yaml.safe_dump(rdf).encode()
            dst.writestr(item, data)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_package(bad, weight_format="pytorch_state_dict")
    assert not Path("/nonexistent-zoo-marker").exists()


def test_export_refuses_what_it_cannot_write(tmp_path):
    model = build("unet", base=4, depth=2)
    with pytest.raises(InputError, match="zip"):
        export_package((model, META), tmp_path / "model.bin", license="MIT")
    with pytest.raises(InputError, match="licence"):
        export_package((model, META), tmp_path / "model.zip", license="")


def test_cli_export(tmp_path, capsys):
    from napari_segnets._cli import main

    model = _calibrated("unet", {"base": 4, "depth": 2})
    ckpt = checkpoints.save(tmp_path / "m.safetensors", model, META)
    out = tmp_path / "m.zip"
    args = ["export", "--checkpoint", str(ckpt), "--out", str(out), "--format", "bioimageio"]
    assert main(args) == 2  # no licence: one line, exit 2
    assert "license" in capsys.readouterr().err
    assert main([*args, "--license", "CC-BY-4.0", "--author", "Me", "--data-name", "EPFL",
                 "--weights", "pytorch_state_dict,torchscript"]) == 0
    loaded, meta = checkpoints.load(out)
    assert meta["content_hash"] == checkpoints.read_metadata(ckpt)["content_hash"]


def test_undeclared_halo_is_measured(tmp_path):
    import yaml

    folder = _nuclei(tmp_path)
    rdf = yaml.safe_load((folder / "bioimageio.yaml").read_text())
    for axis in rdf["outputs"][0]["axes"]:
        axis.pop("halo", None)
    (folder / "bioimageio.yaml").write_text(yaml.safe_dump(rdf))
    model, _ = checkpoints.load(folder)
    # A 3-level U-Net with two 3x3 convolutions per level reaches well beyond the 32 declared.
    assert not model.halo_declared and 32 <= model.halo < 256


@pytest.mark.parametrize(
    "ops,expected",
    [
        ([{"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": 2, "max_percentile": 98}},
          {"id": "clip", "kwargs": {"min": 0, "max": 1}}],
         {"mode": "percentile", "low": 2.0, "high": 98.0, "eps": 1e-6, "clip": [0.0, 1.0]}),
        ([{"id": "scale_linear", "kwargs": {"gain": 0.5, "offset": -1.0}}],
         {"mode": "fixed", "vmin": 2.0, "vmax": 4.0, "clip": None}),
        ([{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}, {"id": "zero_mean_unit_variance"}],
         {"mode": "meanstd", "eps": 1e-6, "clip": None}),
        ([], {"mode": "none", "clip": None}),
    ],
)
def test_preprocessing_ops_become_normalisation_specs(ops, expected):
    from napari_segnets.bioimageio._ops import normalization_from_ops
    from napari_segnets.io.normalize import apply_normalization, fit_normalization

    spec = normalization_from_ops(ops)
    assert spec == expected
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = apply_normalization(image, fit_normalization(image, spec))
    if spec["mode"] == "meanstd":
        np.testing.assert_allclose(out, (image - image.mean()) / (image.std() + 1e-6), rtol=1e-5)
    if spec["mode"] == "fixed":
        np.testing.assert_allclose(out, image * 0.5 - 1.0)  # scale_linear as declared, unclipped


def test_unsupported_ops_are_named():
    from napari_segnets.bioimageio._ops import normalization_from_ops, output_ops

    with pytest.raises(CheckpointError, match="scale_mean_variance"):
        normalization_from_ops([{"id": "scale_mean_variance", "kwargs": {"reference_tensor": "x"}}])
    with pytest.raises(CheckpointError, match="zero_mean_unit_variance"):
        output_ops([{"id": "zero_mean_unit_variance"}])
