"""TFLite metadata for an image classifier, so MediaPipe Tasks' ImageClassifier and the Android
Task Library take the .tflite as it is: input image properties (RGB), normalization, the class
labels as an associated file, and name / description / version / author / license.

Route (mediapipe 1.2.x wheel): the maintained metadata writers
(`mediapipe.tasks.python.metadata.metadata_writers.metadata_writer`, `image_classifier`) cannot
be imported: they import `metadata.py`, which imports `mediapipe.tasks.cc.metadata.python.
_pywrap_metadata_version`, a C++ extension the wheel does not ship. Their building blocks can:
`metadata_writers.metadata_info` (GeneralMd, InputImageTensorMd, ClassificationTensorMd,
LabelFileMd: the writer's own field-filling code) and the flatbuffer schema module
`mediapipe.tasks.metadata.metadata_schema_py_generated` import only flatbuffers. So the tables
come from MediaPipe's own metadata_info classes, and the two steps of MetadataPopulator are done
here: (1) the packed ModelMetadata goes into a model buffer named "TFLITE_METADATA" (the TFLite
schema module of ai-edge-litert, object API, as the populator does); (2) the labels file is
appended as a zip archive after the flatbuffer. Two things differ, on purpose:
  - min_parser_version is "1.0.0", written by us: the missing extension computes it as the
    newest schema version among the fields populated, and every field written here (model info,
    ImageProperties, NormalizationOptions, stats, FeatureProperties, a TENSOR_AXIS_LABELS file)
    exists since 1.0.0 (metadata_schema.fbs history); nothing from 1.0.1+ is used.
  - the zip entry has a fixed timestamp (the populator's ZipFile.writestr stamps the current
    time), so two conversions stay byte-identical.
MediaPipe refuses per-channel normalization ("Per-channel image normalization is not
available"), so metadata is written only for raw-pixel inputs, whose normalization is inside
the model: mean 0 / std 1 (the identity on 0-255 pixels).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import BackendMissingError, ConversionError
from .litert_flatbuffer import model_bytes, read_model

METADATA_NAME = "TFLITE_METADATA"      # the model metadata entry readers look for
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"           # see the module docstring
LABELS_FILE = "labels.txt"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)      # fixed: byte-identical artifacts
MODULES = ("mediapipe.tasks.metadata.metadata_schema_py_generated",
           "mediapipe.tasks.python.metadata.metadata_writers.metadata_info")


def check_metadata_writer() -> None:
    """BackendMissingError naming the mediapipe extra when its metadata modules do not import."""
    import importlib

    for module in MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            err = BackendMissingError("TFLite metadata (tflite with --input raw)", "mediapipe", "mediapipe")
            err.hint += "; or pass --no-metadata (the app then needs its own labels)"
            raise err from None


def labels_for(class_names, num_classes: int) -> list[str]:
    """One label per output index, one line each (a name holding a line break would shift every
    later label in a line-based labels file)."""
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ConversionError(f"{len(names)} class names for {num_classes} outputs",
                              hint="the checkpoint's class_names must list one name per class")
    return [" ".join(str(n).split()) or str(i) for i, n in enumerate(names)]


def add_classifier_metadata(path: str | Path, app_info: dict, class_names=None) -> dict:
    """Write image-classifier metadata into the .tflite at `path` (in place); what was written."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mfb
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info as mi

    path = Path(path)
    buf = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(buf)):
        raise ConversionError(f"{path.name} already carries associated files; refusing to stack metadata")
    graph = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ConversionError("image-classifier metadata needs one input and one output tensor")
    in_type = graph.Tensors(graph.Inputs(0)).Type()
    out_type = graph.Tensors(graph.Outputs(0)).Type()
    labels = labels_for(class_names, int(graph.Tensors(graph.Outputs(0)).ShapeAsNumpy()[-1]))

    general = mi.GeneralMd(name=app_info.get("name"), version=app_info.get("version"),
                           description=app_info.get("description"), author=app_info.get("author"),
                           licenses=app_info.get("license"))
    image = mi.InputImageTensorMd(
        name="image", description="RGB image, pixel values 0-255 (normalization is inside the model)",
        norm_mean=[0.0], norm_std=[1.0], color_space_type=mfb.ColorSpaceType.RGB, tensor_type=in_type)
    scores = mi.ClassificationTensorMd(
        name="logits", description="logits per class (softmax gives probabilities; top-1 is the argmax)",
        label_files=[mi.LabelFileMd(LABELS_FILE)], tensor_type=out_type)
    meta = general.create_metadata()
    subgraph = mfb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image.create_metadata()]
    subgraph.outputTensorMetadata = [scores.create_metadata()]
    meta.subgraphMetadata = [subgraph]
    meta.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(meta.Pack(builder), METADATA_IDENTIFIER)
    meta_bytes = bytes(builder.Output())

    model = read_model(buf, "add metadata to it")
    entry = schema.BufferT()
    entry.data = np.frombuffer(meta_bytes, dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.buffers.append(entry)
    record = schema.MetadataT()
    record.name = METADATA_NAME
    record.buffer = len(model.buffers) - 1
    model.metadata.append(record)
    out = io.BytesIO()
    out.write(model_bytes(model))
    # The associated files: a zip archive after the flatbuffer (readers find its central
    # directory at the end of the file), as MetadataPopulator writes it.
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo(LABELS_FILE, date_time=_ZIP_TIME)
        info.external_attr = 0o644 << 16
        zf.writestr(info, "\n".join(labels))
    path.write_bytes(out.getvalue())
    return {"writer": "mediapipe metadata_writers.metadata_info tables, populated by vanillanet-edge "
                      "(see converters/litert_metadata.py)",
            "task": "image classifier (MediaPipe Tasks ImageClassifier, TFLite Task Library)",
            "min_parser_version": MIN_PARSER_VERSION,
            "input": {"color_space": "RGB", "normalization": {"mean": [0.0], "std": [1.0]},
                      "why": "the model takes raw 0-255 pixels; ImageNet mean/std are inside it"},
            "labels_file": LABELS_FILE, "labels": len(labels),
            **{k: app_info.get(k) for k in ("name", "description", "version", "author", "license")}}
