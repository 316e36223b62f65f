"""The one small interface every target implements, and the request it receives.

A converter only turns a fused torch model into files in a folder it is given. Loading,
fusing, choosing inputs, verification, the manifest and atomic publication are shared
(converters/convert.py), so every target is checked and described the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ..calibration.dataset import AUTO_METHOD, CalibrationSet
from ..errors import BackendMissingError, VanillaNetEdgeError
from ..images import Preprocessing

PRECISIONS = ("fp32", "fp16", "int8")
PIXELS = ("raw", "normalized")    # what an artifact's input takes (ConvertRequest.pixels)


@dataclass
class ConvertRequest:
    model: nn.Module               # fused, export-ready (adaptive pools rewritten), eval mode
    precision: str                 # one of PRECISIONS
    input_size: int
    batch: int
    preprocessing: Preprocessing
    sample_inputs: np.ndarray      # real images (N, 3, H, W) float32, NCHW, preprocessed
    options: dict = field(default_factory=dict)   # target-specific settings, recorded in the manifest
    calibration: "CalibrationSet | None" = None   # INT8 only: images, method, excluded layers
    # What the artifact's input takes (manifest input.pixels): "normalized" = the network's own
    # input; "raw" = RGB pixel values 0-255 as float, the normalization inside `model` (folded
    # into VanillaNet's stem, or prepended as ops), so an app feeds camera pixels as they come.
    # With "raw", sample_inputs and the calibration images are given as raw pixels too.
    pixels: str = "normalized"
    class_names: list[str] | None = None         # label per output index, for app-facing metadata
    # App-facing metadata: author, license, description, version (Core ML's and TFLite's fields).
    app_info: dict = field(default_factory=dict)

    @property
    def input_shape_nchw(self) -> tuple[int, int, int, int]:
        return (self.batch, 3, self.input_size, self.input_size)


@dataclass
class ExportResult:
    artifact: str                  # file or folder name inside the artifact folder
    layout: str                    # "NCHW" or "NHWC": what the artifact's input expects
    input_name: str
    output_name: str
    io_dtype: str = "float32"
    input_dtype: str | None = None   # the input's own dtype where it differs from io_dtype (uint8 pixels)
    notes: dict = field(default_factory=dict)   # anything worth recording (e.g. default precision)
    # INT8 only: proof the artifact is integer, e.g. {"conv_total": 9, "conv_int8": 9,
    # "int8_ops": 25, "float_ops": 2, "fraction_conv_int8": 1.0, "how": "what was counted"}
    int8: dict | None = None


class Converter(ABC):
    target: str                   # name users type: onnx, openvino, tflite, coreml
    extra: str                    # pip extra that installs the toolchain
    runtime: str                  # runner used to verify the artifact (devices registry name)
    modules: tuple[str, ...]      # importable modules the toolchain needs
    precisions: tuple[str, ...] = ("fp32", "fp16")
    description: str = ""
    # INT8: the calibration methods this toolchain really offers, and whether it can keep
    # chosen layers in float (used by the accuracy budget). Layers are named by the fused torch
    # model's module names (see calibration/layers.py); each converter maps them to its graph.
    int8_methods: tuple[str, ...] = ()
    excludes_layers: bool = False
    # Input layouts this converter can write besides its native one, asked for with
    # options["input_layout"] (what `tune` searches as the layout axis).
    layout_options: tuple[str, ...] = ()
    int8_methods_note: str = ""   # why a common method is missing, for the error's hint
    default_pixels: str = "normalized"   # what --input defaults to for this target (PIXELS)
    # What --calib-method auto (the default) means for this toolchain: one of int8_methods.
    default_int8_method: str = "minmax"
    default_pixels: str = "normalized"   # what --input defaults to for this target (PIXELS)

    @classmethod
    def for_target(cls, calibration: CalibrationSet | None) -> CalibrationSet | None:
        """The calibration set with method "auto" resolved to this toolchain's own default, so
        one `--target all --calib-method auto` run calibrates every target with a method it has
        (the manifest records the resolved one)."""
        if calibration is not None and calibration.method == AUTO_METHOD and cls.default_int8_method:
            return dataclasses.replace(calibration, method=cls.default_int8_method)
        return calibration

    @classmethod
    def check_int8_request(cls, calibration: CalibrationSet | None) -> None:
        """Refuse an INT8 request this toolchain cannot honour, saying what it can do.
        convert_one calls it before exporting; each converter's quantizer too (export is public)."""
        if calibration is None:
            raise VanillaNetEdgeError("int8 needs calibration images",
                                      hint="pass --calib-data DIR (an image folder like the deployment data)")
        if calibration.method not in cls.int8_methods:
            raise VanillaNetEdgeError(
                f"{cls.target} cannot calibrate with '{calibration.method}'",
                hint=f"{cls.target} supports: {', '.join(cls.int8_methods) or 'no int8 yet'}"
                     + (f" ({cls.int8_methods_note})" if cls.int8_methods_note else ""))
        if calibration.excluded_layers and not cls.excludes_layers:
            raise VanillaNetEdgeError(f"{cls.target} cannot keep chosen layers in float",
                                      hint="drop --max-drop for this target")

    def availability(self) -> tuple[bool, str]:
        """(available, reason). Never raises."""
        try:
            self.check_available()
        except BackendMissingError as exc:
            return False, f"{exc} ({exc.hint})"
        return True, "ok"

    def check_available(self) -> None:
        """Raise BackendMissingError naming the extra to install when the toolchain is absent."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError:
                raise BackendMissingError(f"the {self.target} converter", self.extra, module) from None

    def check_app_request(self, pixels: str, options: dict) -> None:
        """Refuse, before any work, an app-facing request (raw pixels, metadata) this toolchain
        cannot honour here; a missing optional package raises BackendMissingError."""

    def verify_settings(self, request: ConvertRequest) -> dict:
        """Runtime settings used when verifying (e.g. force f32 where a device defaults to bf16)."""
        return {}

    @abstractmethod
    def library_versions(self) -> dict[str, str]:
        """Versions of the tools that wrote the artifact, for the manifest."""

    @abstractmethod
    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        """Write the artifact into `folder` (a fresh, private folder) and describe it."""


def app_contract(request: ConvertRequest, layout: str, dtype: str, num_classes: int) -> dict:
    """What an app needs to feed the artifact and read its output, as plain values: written into
    the formats' own metadata (ONNX metadata_props, OpenVINO rt_info) beside the manifest."""
    p = request.preprocessing
    labels = list(request.class_names) if request.class_names else [str(i) for i in range(num_classes)]
    out = {"labels": labels, "pixels": request.pixels, "layout": layout, "dtype": dtype, "color": "RGB",
           "size": [request.input_size, request.input_size], "resize": p.resize, "crop": p.crop,
           "interpolation": p.interpolation, "output": "logits (softmax gives probabilities)"}
    if request.pixels == "raw":
        out["normalization"] = "none: feed RGB 0-255, mean/std are inside the model"
    else:
        out.update({"mean": list(p.mean), "std": list(p.std),
                    "normalization": "(x / 255 - mean) / std per channel, x = RGB 0-255"})
    out.update({k: v for k, v in request.app_info.items() if k in ("author", "license", "version")})
    return out


@contextlib.contextmanager
def quiet_output(logger: str | None = None, level: int = logging.WARNING, stderr: bool = True):
    """Drop a toolchain's progress bars and prints during export: Python-level stdout (and
    stderr unless told otherwise), and, given a logger name ("" = root), its records below `level`.

    Exceptions still propagate with their messages; our own log lines are printed outside.
    """
    log = logging.getLogger(logger) if logger is not None else None
    old = log.level if log else None
    if log:
        log.setLevel(level)
    try:
        with contextlib.redirect_stdout(io.StringIO()), \
                (contextlib.redirect_stderr(io.StringIO()) if stderr else contextlib.nullcontext()):
            yield
    finally:
        if log:
            log.setLevel(old)


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out
