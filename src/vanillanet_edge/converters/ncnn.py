"""ncnn: the request's model traced to TorchScript, converted by pnnx to a .param + .bin pair,
verified in the ncnn wheel.

pnnx is called as its command-line binary (the wheel ships it), not through `pnnx.export`:
that one imports the Python it generates, which fails for modules with numeric child names
(nn.Sequential). ncnn graphs have no batch axis: the graph takes one (3, H, W) image and the
runner loops over a batch. Adaptive pools arrive as model/adapool.py's gather form, whose
index_select pnnx leaves as an op ncnn does not have ("torch.index_select"): here they become
strided max pools over slices (exact, as for LiteRT; pnnx writes them as Crop + Pooling).

Precisions: fp32, and fp16 (pnnx fp16=1: fp16 weights, run with ncnn's fp16 storage and
arithmetic). No int8: see INT8_NOTE.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConversionError
from ..model.adapool import FixedAdaptiveMaxPool2d
from .base import Converter, ConvertRequest, ExportResult, package_versions
from .litert_export import StridedAdaptiveMaxPool2d

PARAM = "model.ncnn.param"
BIN = "model.ncnn.bin"
INPUT_NAME, OUTPUT_NAME = "in0", "out0"     # pnnx's names for the first input and output
PNNX_TIMEOUT_S = 1800
INT8_NOTE = ("ncnn int8 needs ncnn's own ncnn2table (calibration) and ncnn2int8 tools, which no "
             "ncnn or pnnx wheel ships: ncnn artifacts are fp32 or fp16 only")


class NcnnConverter(Converter):
    target = "ncnn"
    extra = "ncnn"
    runtime = "ncnn"
    modules = ("pnnx", "ncnn")
    precisions = ("fp32", "fp16")
    int8_methods_note = INT8_NOTE
    description = ("ncnn .param/.bin via pnnx (TorchScript), NCHW float32 I/O, one image per "
                   "inference; fp16: fp16 weights and ncnn's fp16 storage/arithmetic; no int8")

    def library_versions(self) -> dict[str, str]:
        return package_versions("pnnx", "ncnn")

    def export(self, request: ConvertRequest, folder: Path) -> ExportResult:
        model, replaced = export_form(request.model, request.sample_inputs[:1])
        x = torch.from_numpy(np.ascontiguousarray(request.sample_inputs[:1], dtype=np.float32))
        fp16 = request.precision == "fp16"
        with tempfile.TemporaryDirectory(prefix="vne-ncnn-") as tmp:
            work = Path(tmp)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")      # torch.jit.trace's deprecation notice
                torch.jit.trace(model, x).save(str(work / "model.pt"))
            run_pnnx(work, "model.pt", request.input_size, fp16)
            check_ops(work / PARAM)
            shutil.copyfile(work / PARAM, folder / PARAM)
            shutil.copyfile(work / BIN, folder / BIN)
        notes = {
            "converter": "pnnx command line on a torch.jit.trace of the model",
            "graph_batch": "one (3, H, W) image per inference (ncnn has no batch axis); the runner "
                           "loops over a batch",
            "int8": f"not offered: {INT8_NOTE}",
        }
        if replaced:
            notes["rewrites"] = [f"{replaced} adaptive max pool(s) as strided max pools (exact)"]
        if fp16:
            notes["fp16"] = ("fp16 weights (pnnx fp16=1); ncnn's fp16 storage, packing and arithmetic on "
                             "(fp16 arithmetic only where the CPU has it)")
        return ExportResult(PARAM, "NCHW", INPUT_NAME, OUTPUT_NAME, notes=notes)


@torch.no_grad()
def export_form(model: nn.Module, sample: np.ndarray) -> tuple[nn.Module, int]:
    """A copy whose gather-form adaptive pools are strided max pools, checked bit-exact."""
    import copy

    out = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(out.named_modules()):
        if isinstance(module, FixedAdaptiveMaxPool2d):
            parent_name, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent_name) if parent_name else out, attr,
                    StridedAdaptiveMaxPool2d(module.in_hw, module.out_hw))
            replaced += 1
    if replaced:
        x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
        if not torch.equal(model.eval()(x), out(x)):
            raise ConversionError("the ncnn export rewrite changed the model's outputs (it must be exact)",
                                  hint="report this with the checkpoint")
    return out, replaced


def pnnx_binary() -> Path:
    """The pnnx executable inside the installed wheel, found without importing its Python."""
    spec = importlib.util.find_spec("pnnx")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / ("pnnx.exe" if os.name == "nt" else "pnnx")
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ConversionError("the pnnx wheel holds no runnable pnnx binary",
                          hint="reinstall it: pip install --no-deps pnnx (its version pin is in constraints.txt)")


def run_pnnx(work: Path, torchscript: str, size: int, fp16: bool) -> None:
    """pnnx model.pt inputshape=[1,3,S,S] fp16=0|1 in `work`; its output only shown on failure."""
    command = [str(pnnx_binary()), torchscript, f"inputshape=[1,3,{size},{size}]", f"fp16={int(fp16)}",
               f"ncnnparam={PARAM}", f"ncnnbin={BIN}", "device=cpu"]
    try:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, errors="replace",
                              timeout=PNNX_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"pnnx did not finish within {PNNX_TIMEOUT_S} s") from None
    if done.returncode != 0 or not (work / PARAM).is_file() or not (work / BIN).is_file():
        tail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise ConversionError(f"pnnx failed (exit code {done.returncode}): {tail}",
                              hint="report this with the checkpoint; another target meanwhile")


def check_ops(param: Path) -> None:
    """Refuse a graph holding ops ncnn cannot run: pnnx keeps an op it cannot lower under its
    torch name (torch.index_select, F.xxx, pnnx.xxx), which ncnn only rejects when loading."""
    lines = param.read_text().splitlines()[2:]     # magic, then layer and blob counts
    foreign = sorted({line.split()[0] for line in lines if line.split() and "." in line.split()[0]})
    if foreign:
        raise ConversionError(f"pnnx left ops ncnn does not have: {', '.join(foreign)}",
                              hint="report this with the checkpoint; another target meanwhile")
