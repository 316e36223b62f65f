"""Checks shared by the Core ML converter tests (imported as a top-level module: pytest puts
this folder on sys.path, as tests/cluster does for raycluster.py)."""
from __future__ import annotations


def assert_float32_or_classifier_output(program, manifest):
    """Logits as float32 (a MultiArray model), or, for the app form (raw pixels, the Core ML
    default), classifier outputs whose labels are the model's."""
    if manifest["input"].get("pixels") == "raw":
        labels = manifest["model"].get("labels") or manifest["model"]["class_names"]
        assert program.class_labels == [str(c) for c in labels]
        assert manifest["output"]["name"] == "classLabel_probs"
        assert manifest["output"]["meaning"].startswith("probabilities")
    else:
        assert program.outputs[0].dtype == "fp32"
