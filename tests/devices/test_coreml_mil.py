"""Tests of the numpy MIL interpreter against real coremltools conversions.

Every model is converted once (module-scoped fixtures) and executed both by
torch (the reference) and by ``MILProgram``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vanillanet_edge.devices.coreml_mil import (  # noqa: E402
    MILProgram,
    UnsupportedMILOp,
    supported_ops,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
logging.getLogger("coremltools").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="coremltools")

FP32_TOL = 1e-5
FP16_TOL = 1e-2
INT8_TOL = 2e-2


def rel_err(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- models


def _dw(c):
    return nn.Conv2d(c, c, 7, padding=3, groups=c)


class VanillaLike(nn.Module):
    """The op set of a deployed VanillaNet: patchify stem, ReLU + depthwise 7x7
    "activation", 1x1 convs, max pools, global average pool, 1x1 classifier."""

    def __init__(self, c=32, pool="k2", classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4)
        self.act0 = _dw(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.pool1 = {
            "k2": nn.MaxPool2d(2),
            "ceil": nn.MaxPool2d(2, stride=2, ceil_mode=True),
            "padded": nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        }[pool]
        self.act1 = _dw(2 * c)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 1)
        self.pool2 = nn.AdaptiveAvgPool2d(1)
        self.cls = nn.Conv2d(2 * c, classes, 1)

    def forward(self, x):
        x = self.act0(F.relu(self.stem(x)))
        x = F.leaky_relu(self.conv1(x), 0.5)
        x = self.act1(F.relu(self.pool1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = self.cls(x)
        # NB: x.view(x.size(0), -1) does not convert with torch 2.14 +
        # coremltools 9 (aten::Int on a 1-element array); flatten does.
        return torch.flatten(x, 1)


class PoolZoo(nn.Module):
    """Padded / ceil-mode max pools, -inf padding, slicing and concat (the ops an
    AdaptiveMaxPool2d rewrite produces), on odd spatial sizes."""

    def forward(self, x):
        a = F.max_pool2d(x, 3, stride=2, padding=1)  # 15 -> 8
        b = F.max_pool2d(x, 2, stride=2, ceil_mode=True)  # 15 -> 8
        c = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, stride=2)  # 17 -> 8
        d = torch.cat([x[:, :, 0:8, 0:8].amax(dim=(2, 3), keepdim=True).expand(-1, -1, 8, 8),
                       x[:, :, 7:15, 3:11]], dim=1)
        e = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        f = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=True)
        y = torch.cat([a, b, c, d, e, f], dim=1)
        return torch.cat([y[:, :, :4], y[:, :, 4:] * 2.0 - 1.0], dim=2)


class MiscOps(nn.Module):
    """Other ops the interpreter implements: grouped / dilated / strided conv,
    depthwise with channel multiplier, "same" padding with an even kernel,
    reflect / replicate pad, avg_pool, transpose, linear, matmul, elementwise."""

    def __init__(self):
        super().__init__()
        self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2, groups=2)
        self.dw_mult = nn.Conv2d(16, 32, 3, groups=16, bias=False)
        self.same = nn.Conv2d(32, 8, 4, padding="same")
        self.fc = nn.Linear(48, 5)

    def forward(self, x):
        y = self.grouped(F.pad(x, (1, 1, 2, 0), mode="reflect"))
        y = F.pad(y, (1, 0, 0, 1), mode="replicate")
        y = F.avg_pool2d(self.same(self.dw_mult(y)), 2)
        y = y.permute(0, 2, 3, 1).reshape(2, -1)[:, :48]
        z = self.fc(y)
        return torch.cat([z, z @ z.t()], 1) / 3.0 + torch.maximum(z.mean(1, keepdim=True), torch.zeros(1))


class Unsupported(nn.Module):
    """tanh and sigmoid: two ops the interpreter does not implement (a VanillaNet has neither)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.tanh(torch.sigmoid(self.conv(x)).mean((2, 3)))


def _convert(model, x, precision, target=None):
    model = model.eval()
    traced = torch.jit.trace(model, x)
    return ct.convert(
        traced,
        inputs=[ct.TensorType(name="input", shape=tuple(x.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name="logits", dtype=np.float32)],
        convert_to="mlprogram",
        minimum_deployment_target=target or ct.target.iOS17,
        compute_precision=precision,
    )


def _int8_weights(mlmodel):
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    cfg = OptimizationConfig(
        global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=0)
    )
    return linear_quantize_weights(mlmodel, cfg)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (path, torch model, example input)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("coreml_mil")
    out = {}

    def save(name, mlmodel, model, x):
        path = root / f"{name}.mlpackage"
        mlmodel.save(str(path))
        out[name] = (path, model, x)

    x1 = torch.randn(1, 3, 64, 64)
    x2 = torch.randn(2, 3, 64, 64)
    fp32 = ct.precision.FLOAT32
    fp16 = ct.precision.FLOAT16
    for name, pool, x, prec in [
        ("fp32_b1", "k2", x1, fp32),
        ("fp32_b2_padded", "padded", x2, fp32),
        ("fp16_b1", "ceil", x1, fp16),
        ("fp16_b2", "k2", x2, fp16),
    ]:
        m = VanillaLike(c=32, pool=pool).eval()
        ml = _convert(m, x, prec)
        save(name, ml, m, x)
        if name == "fp32_b1":
            save("int8w_fp32", _int8_weights(ml), m, x)
        if name == "fp16_b1":
            save("int8w_fp16", _int8_weights(ml), m, x)
    m = VanillaLike(c=32, pool="k2").eval()
    save("int8w_ios18_fp16", _int8_weights(_convert(m, x1, fp16, ct.target.iOS18)), m, x1)

    xz = torch.randn(2, 5, 15, 15)
    save("poolzoo", _convert(PoolZoo(), xz, fp32), PoolZoo(), xz)
    xm = torch.randn(2, 8, 27, 25)
    torch.manual_seed(1)
    m = MiscOps().eval()
    save("misc_fp32", _convert(m, xm, fp32), m, xm)
    save("misc_fp16", _convert(m, xm, fp16), m, xm)
    xs = torch.randn(1, 3, 16, 16)
    save("unsupported", _convert(Unsupported(), xs, fp32), Unsupported(), xs)
    return out


def _run(models, name):
    path, model, x = models[name]
    prog = MILProgram.load(path)
    y = prog.run({"input": x.numpy()})["logits"]
    with torch.no_grad():
        ref = model(x).numpy()
    return prog, y, ref


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ["fp32_b1", "fp32_b2_padded"])
def test_fp32_matches_torch(models, name):
    prog, y, ref = _run(models, name)
    assert prog.input_names == ["input"] and prog.output_names == ["logits"]
    assert y.dtype == np.float32 and y.shape == ref.shape
    err = rel_err(y, ref)
    print(f"{name}: fp32 relative error {err:.3e}")
    assert err < FP32_TOL
    np.testing.assert_array_equal(y.argmax(1), ref.argmax(1))
    assert {"conv", "relu", "leaky_relu", "max_pool", "reduce_mean", "reshape"} <= set(prog.op_types)


@pytest.mark.parametrize("name", ["fp16_b1", "fp16_b2"])
def test_fp16_matches_torch(models, name):
    prog, y, ref = _run(models, name)
    err = rel_err(y, ref)
    print(f"{name}: fp16 relative error {err:.3e}")
    assert err < FP16_TOL
    # it really is emulated in fp16: not as close as fp32
    assert err > 1e-6
    np.testing.assert_array_equal(y.argmax(1), ref.argmax(1))
    assert prog.op_types["cast"] == 2


@pytest.mark.parametrize("name", ["int8w_fp32", "int8w_fp16", "int8w_ios18_fp16"])
def test_int8_weights(models, name):
    prog, y, ref = _run(models, name)
    qops = prog.op_types["constexpr_affine_dequantize"] + prog.op_types["constexpr_blockwise_shift_scale"]
    assert qops == 6  # every conv weight is int8
    err = rel_err(y, ref)
    print(f"{name}: int8-weight relative error vs fp32 torch {err:.3e}")
    assert err < INT8_TOL
    np.testing.assert_array_equal(y.argmax(1), ref.argmax(1))


def test_int8_weights_match_fake_quantized_torch(models):
    """Independent check of the weight decompression: torch with weights
    quantized the way linear_symmetric int8 does (per output channel,
    scale = max|w| / 127) must agree to fp32 precision."""
    path, model, x = models["int8w_fp32"]
    fq = VanillaLike(c=32, pool="k2").eval()
    fq.load_state_dict(model.state_dict())
    with torch.no_grad():
        for mod in fq.modules():
            if isinstance(mod, nn.Conv2d):
                w = mod.weight
                scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127.0
                mod.weight.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
        ref = fq(x).numpy()
    y = MILProgram.load(path).run({"input": x.numpy()})["logits"]
    assert rel_err(y, ref) < 1e-5


def test_padded_pools_slice_concat_exact(models):
    prog, y, ref = _run(models, "poolzoo")
    assert {"pad", "slice_by_index", "concat", "max_pool", "avg_pool"} <= set(prog.op_types)
    print(f"poolzoo: max abs diff {np.abs(y - ref).max():.3e} ops {dict(prog.op_types)}")
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    # max pools (padded, ceil_mode, -inf pad), slices, tile and concat are exact:
    # channels 0..24 of the first 4 rows hold only those
    np.testing.assert_array_equal(y[:, :25, :4], ref[:, :25, :4])


@pytest.mark.parametrize("name, tol", [("misc_fp32", FP32_TOL), ("misc_fp16", FP16_TOL)])
def test_other_ops(models, name, tol):
    prog, y, ref = _run(models, name)
    assert {"linear", "matmul", "transpose", "pad", "avg_pool", "add", "mul", "maximum"} <= set(prog.op_types)
    err = rel_err(y, ref)
    print(f"{name}: relative error {err:.3e}")
    assert err < tol


def test_unsupported_op_is_refused_before_running(models):
    path, _, x = models["unsupported"]
    with pytest.raises(UnsupportedMILOp) as info:
        MILProgram.load(path)
    assert "tanh" in info.value.op_types and "sigmoid" in info.value.op_types
    assert "tanh" in str(info.value) and "sigmoid" in str(info.value)
    assert "tanh" not in supported_ops()

    # strict=False: loads (e.g. to count op types), refuses to run anything
    prog = MILProgram.load(path, strict=False)
    assert prog.op_types["tanh"] == 1 and prog.unsupported
    calls = []
    with pytest.raises(UnsupportedMILOp):
        prog.run({"input": x.numpy()}, record=lambda *a: calls.append(a))
    assert calls == []


def test_unsupported_parameter_value_is_refused(tmp_path):
    """A known op with a parameter value we do not implement is refused too."""

    class CeilAvg(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 2, stride=2, ceil_mode=True)  # 15 -> 8, last window overhangs

    x = torch.randn(1, 2, 15, 15)
    path = tmp_path / "ceil_avg.mlpackage"
    _convert(CeilAvg(), x, ct.precision.FLOAT32).save(str(path))
    with pytest.raises(UnsupportedMILOp, match="avg_pool.*ceil_mode"):
        MILProgram.load(path)


def test_unknown_parameter_and_value_in_edited_package(models, tmp_path):
    """Edit a converted package's protobuf: a bogus pad_type value and an unknown
    op parameter are both reported, in one exception, at load time."""
    import shutil

    from coremltools.proto import Model_pb2

    src = models["fp32_b1"][0]
    dst = tmp_path / "edited.mlpackage"
    shutil.copytree(src, dst)
    spec_file = dst / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    main = spec.mlProgram.functions["main"]
    ops = main.block_specializations[main.opset].operations
    pad_type = next(op for op in ops if op.type == "const" and op.outputs[0].name.endswith("pad_type_0"))
    pad_type.attributes["val"].immediateValue.tensor.strings.values[0] = "bogus"
    relu = next(op for op in ops if op.type == "relu")
    relu.inputs["mystery"].arguments.add().name = relu.inputs["x"].arguments[0].name
    spec_file.write_bytes(spec.SerializeToString())

    with pytest.raises(UnsupportedMILOp) as info:
        MILProgram.load(dst)
    msg = str(info.value)
    assert "pad_type 'bogus'" in msg and "mystery" in msg
    assert info.value.op_types == {"conv", "relu"}


def test_record_callback(models):
    for name in ("fp16_b2", "int8w_fp32"):
        path, _, x = models[name]
        prog = MILProgram.load(path)
        seen = []
        prog.run({"input": x.numpy()}, record=lambda n, t, a: seen.append((n, t, a)))
        executed = [op for op in prog.ops if op.type != "const" and not op.type.startswith("constexpr_")]
        assert [(n, t) for n, t, _ in seen] == [(op.name, op.type) for op in executed]
        for (_, _, arr), op in zip(seen, executed):
            assert arr.shape == op.outputs[0].shape
            assert arr.dtype == op.outputs[0].np_dtype
            assert not arr.flags.writeable
        if name == "fp16_b2":
            assert [a.dtype for n, t, a in seen if t == "conv"] == [np.float16] * 6
            assert seen[-1][2].shape == (2, 10)


def test_quantize_dequantize_ops(tmp_path):
    """int8 activation quantization ops (built with the MIL builder: activation
    quantization of a converted model needs macOS for calibration)."""
    from coremltools.converters.mil import Builder as mb

    scales = np.linspace(0.01, 0.1, 8).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 8, 6, 6))], opset_version=ct.target.iOS17)
    def prog(x):
        q = mb.quantize(input=x, scale=np.float32(0.05), zero_point=np.int8(3), output_dtype="int8")
        d = mb.dequantize(input=q, scale=np.float32(0.05), zero_point=np.int8(3))
        q2 = mb.quantize(input=d, scale=scales, zero_point=np.full(8, -5, np.int8), axis=1, output_dtype="int8")
        d2 = mb.dequantize(input=q2, scale=scales, zero_point=np.full(8, -5, np.int8), axis=1)
        return mb.relu(x=d2, name="out")

    path = tmp_path / "qdq.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32).save(str(path))
    p = MILProgram.load(path)
    assert p.op_types["quantize"] == 2 and p.op_types["dequantize"] == 2
    x = (np.random.default_rng(0).standard_normal((2, 8, 6, 6)) * 4).astype(np.float32)
    acts = {}
    y = p.run({p.input_names[0]: x}, record=lambda n, t, a: acts.setdefault(t, []).append(a))[p.output_names[0]]
    assert acts["quantize"][0].dtype == np.int8
    t = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), 0.05, 3, -128, 127)
    t = torch.fake_quantize_per_channel_affine(
        t, torch.from_numpy(scales), torch.full((8,), -5, dtype=torch.int32), 1, -128, 127)
    np.testing.assert_allclose(y, torch.relu(t).numpy(), rtol=1e-6, atol=1e-7)


def test_weight_blob_reader_matches_coremltools(models, tmp_path):
    """Our MILBlob parser agrees with coremltools' own reader, sub-byte types included."""
    from coremltools.libmilstoragepython import _BlobStorageReader, _BlobStorageWriter

    from vanillanet_edge.devices.coreml_mil import weights as cm

    path = str(tmp_path / "w.bin")
    rng = np.random.default_rng(0)
    w = _BlobStorageWriter(path)
    blobs = [
        (cm._FP32, rng.standard_normal(37).astype(np.float32), "float"),
        (cm._INT8, rng.integers(-128, 128, 19).astype(np.int8), "int8"),
        (cm._UINT8, rng.integers(0, 256, 5).astype(np.uint8), "uint8"),
        (cm._INT4, rng.integers(-8, 8, 11).astype(np.int8), "int4"),
        (cm._UINT4, rng.integers(0, 16, 9).astype(np.uint8), "uint4"),
        (cm._UINT2, rng.integers(0, 4, 7).astype(np.uint8), "uint2"),
        (cm._UINT3, rng.integers(0, 8, 13).astype(np.uint8), "uint3"),
        (cm._FP16, rng.standard_normal(6).astype(np.float16), "fp16"),
    ]
    offsets = []
    for _, arr, kind in blobs:
        data = arr.view(np.uint16) if kind == "fp16" else arr
        offsets.append(getattr(w, f"write_{kind}_data")(data))
    del w  # the writer completes the header when it is destroyed
    reader = cm._BlobFile(path)
    assert reader.count == len(blobs)
    for (dtype, arr, _), off in zip(blobs, offsets):
        np.testing.assert_array_equal(reader.read(off, dtype, arr.shape), arr)
    with pytest.raises(ValueError):
        reader.read(offsets[0], cm._FP16, (37,))  # dtype mismatch is detected

    # and every blob of a real int8 package (int8 data, fp16 scales)
    pkg = models["int8w_ios18_fp16"][0]
    wfile = str(pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin")
    ours, theirs = cm._BlobFile(wfile), _BlobStorageReader(wfile)
    spec = ct.models.MLModel(str(pkg), skip_model_load=True).get_spec()
    main = spec.mlProgram.functions["main"]
    n = 0
    for op in main.block_specializations[main.opset].operations:
        values = list(op.attributes.values()) + [
            b.value for arg in op.inputs.values() for b in arg.arguments if b.WhichOneof("binding") == "value"
        ]
        for v in values:
            if v.WhichOneof("value") != "blobFileValue":
                continue
            tt = v.type.tensorType
            shape = tuple(d.constant.size for d in tt.dimensions)
            off = v.blobFileValue.offset
            mine = ours.read(off, tt.dataType, shape)
            if tt.dataType == cm._INT8:
                ref = theirs.read_int8_data(off)
            else:
                assert tt.dataType == cm._FP16
                ref = theirs.read_fp16_data(off).view(np.float16)
            np.testing.assert_array_equal(mine.reshape(-1), ref)
            n += 1
    assert n >= 10


def test_inputs_are_checked(models):
    path, _, x = models["fp32_b1"]
    prog = MILProgram.load(path)
    with pytest.raises(KeyError):
        prog.run({"wrong": x.numpy()})
    with pytest.raises(RuntimeError, match="shape"):
        prog.run({"input": np.zeros((1, 3, 32, 32), np.float32)})
    # float64 input is converted to the declared fp32
    y64 = prog.run({"input": x.numpy().astype(np.float64)})["logits"]
    y32 = prog.run({"input": x.numpy()})["logits"]
    np.testing.assert_array_equal(y64, y32)


def test_gather_from_the_exact_adaptive_pool_rewrite(tmp_path):
    """index_select (the gather form of model/adapool.py) becomes MIL gather: exact."""
    import coremltools as ct

    from vanillanet_edge.devices.coreml_mil import MILProgram
    from vanillanet_edge.model.adapool import FixedAdaptiveMaxPool2d

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), FixedAdaptiveMaxPool2d((19, 19), (10, 10))).eval()
    x = torch.randn(1, 3, 19, 19)
    ml = ct.convert(torch.jit.trace(net, x), convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                    inputs=[ct.TensorType(name="input", shape=x.shape, dtype=np.float32)],
                    compute_precision=ct.precision.FLOAT32)
    ml.save(str(tmp_path / "g.mlpackage"))
    prog = MILProgram.load(tmp_path / "g.mlpackage")
    assert prog.op_types["gather"] >= 1
    out = prog.run({"input": x.numpy()})[prog.output_names[0]]
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(out - ref).max() < 1e-5
