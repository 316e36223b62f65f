"""The authors' published speed figures (docs/vanillanet-facts.md), shown beside our measurements
and always labelled as published, never as measured."""
from __future__ import annotations

# The paper's headline and the authors' published figures (docs/vanillanet-facts.md): A100,
# batch 1, 224x224, FP32 eager PyTorch; TensorRT FP32/FP16 where the authors list them.
A100_EAGER_MS = {
    "vanillanet_5": 1.61, "vanillanet_6": 2.01, "vanillanet_7": 2.27, "vanillanet_8": 2.56,
    "vanillanet_9": 2.91, "vanillanet_10": 3.24, "vanillanet_11": 3.59, "vanillanet_12": 3.82,
    "vanillanet_13": 4.26, "vanillanet_13_x1_5": 7.83, "vanillanet_13_x1_5_ada_pool": 9.72,
    "resnet50": 7.64,
}
A100_TENSORRT_MS = {"vanillanet_5": (0.33, 0.27), "vanillanet_9": (0.58, 0.49), "vanillanet_13": (0.82, 0.67)}
OFFICIAL_SOURCE = ("published (not measured here): VanillaNet paper arXiv 2305.12972 and the authors' "
                   "README; A100, batch 1, 224x224, FP32 eager PyTorch unless TensorRT")
CLAIM_MODEL, BASELINE_MODEL = "vanillanet_9", "resnet50"
