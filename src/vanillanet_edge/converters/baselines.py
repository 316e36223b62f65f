"""Deep baselines and random-weight VanillaNets prepared for conversion (PreparedModel), as
converters/convert.py prepares checkpoints: the nets themselves are model/baselines.py."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import VanillaNetEdgeError
from ..images import Preprocessing
from ..model.baselines import (
    build_baseline,
    build_vanillanet_random,
    count_macs,
    count_params,
    get_baseline,
    timm_version,
)
from .verify import torch_reference

N_VERIFY = 32          # verification inputs, as converters/convert.py uses for checkpoints


def _inputs(inputs, input_size: int, n: int, seed: int) -> tuple[np.ndarray, str]:
    if inputs is not None:
        arr = np.ascontiguousarray(np.asarray(inputs, dtype=np.float32))
        if arr.ndim != 4 or arr.shape[1:] != (3, input_size, input_size):
            raise VanillaNetEdgeError(f"inputs must be (N, 3, {input_size}, {input_size}), got {arr.shape}")
        return arr, "real images given by the caller"
    gen = torch.Generator().manual_seed(seed)
    arr = torch.randn(n, 3, input_size, input_size, generator=gen).numpy()
    return arr, f"deterministic random normal inputs (seed {seed}; no image folder given)"


def _prepared(name, description, meta, source, model, input_size, inputs, inputs_source, stats):
    from .convert import PreparedModel

    return PreparedModel(name=name, description=description, model_meta=meta, source=source,
                         fused=model, export_model=model, input_size=input_size,
                         preprocessing=Preprocessing.imagenet(input_size), inputs=inputs,
                         inputs_source=inputs_source, reference=torch_reference(model, inputs),
                         stats=stats, random_weights=True)


def prepare_baseline(name: str, input_size: int = 224, inputs=None, seed: int = 0,
                     num_classes: int = 1000, n_verify: int = N_VERIFY):
    """A timm baseline with random non-degenerate weights, ready for `convert_one`.

    `inputs`: preprocessed images (N, 3, S, S) to verify on; default deterministic random normal.
    """
    spec = get_baseline(name)
    model = build_baseline(name, num_classes, seed, stats_input_size=input_size)
    macs = count_macs(model, input_size)
    params = count_params(model)
    version = timm_version()
    meta = {"variant": name, "family": "baseline", "num_classes": num_classes, "class_names": None,
            "params": params, "macs": macs["macs"], "depth": spec.depth, "depth_note": spec.depth_note,
            "published_top1": spec.published_top1,
            "published_top1_note": "PUBLISHED figure for trained weights, not measured: " + spec.published_source,
            "definition": f"timm {version}", "timm_name": spec.timm_name, "width": 1.0}
    source = {"library": "timm", "version": version, "model": spec.timm_name, "pretrained": False,
              "weights": "random, non-degenerate (latency only)", "seed": seed,
              "init": "timm init; every norm gamma ~ U(0.5,1.5), beta ~ N(0,0.05); BN running stats "
                      "measured on random normal images"}
    arr, where = _inputs(inputs, input_size, n_verify, seed)
    stats = {"params": params, **macs, "depth": spec.depth, "input_size": input_size}
    desc = (f"{name} (timm {spec.timm_name}, random weights, {params / 1e6:.2f} M params, "
            f"{macs['macs'] / 1e9:.2f} GMACs)")
    return _prepared(f"{name}-random", desc, meta, source, model, input_size, arr, where, stats)


def prepare_vanillanet_random(variant: str, input_size: int = 224, seed: int = 0, inputs=None,
                              num_classes: int = 1000, n_verify: int = N_VERIFY):
    """A full-size deploy-form VanillaNet with random non-degenerate weights (no checkpoint)."""
    from ..model.adapool import replace_adaptive_max_pools
    from ..model.profile import summarize
    from ..model.variants import PUBLISHED

    model = build_vanillanet_random(variant, seed, num_classes, stats_input_size=input_size)
    model.config.check_input_size(input_size)
    summary = summarize(model, input_size)
    export_model = replace_adaptive_max_pools(model, input_size)
    meta = {"variant": variant, "family": "vanillanet", "width": 1.0, "num_classes": num_classes,
            "class_names": None, "params": summary["params"], "macs": summary["macs"],
            "depth": summary["depth"], "published_top1": PUBLISHED[variant]["imagenet_top1"],
            "published_top1_note": "PUBLISHED figure for trained weights (VanillaNet paper / release), "
                                   "not measured",
            "definition": "vanillanet_edge.model.variants (deploy form)", "val_top1": None}
    source = {"library": "vanillanet_edge", "pretrained": False, "weights": "random, non-degenerate (latency only)",
              "seed": seed, "form": "deploy",
              "init": "N(0, 1/fan_in) convs (gain 2 on the activation's dwconv); each conv's output "
                      "channels centred and scaled to unit std on random normal images (folded BN)"}
    arr, where = _inputs(inputs, input_size, n_verify, seed)
    stats = {k: summary[k] for k in ("params", "macs", "depth", "input_size")}
    desc = (f"{variant} (deploy form, random weights, {summary['params'] / 1e6:.2f} M params, "
            f"{summary['macs'] / 1e9:.2f} GMACs)")
    prep = _prepared(f"{variant}-random", desc, meta, source, model, input_size, arr, where, stats)
    prep.export_model = export_model
    return prep


def prepare_any(name: str, input_size: int = 224, inputs=None, seed: int = 0, n_verify: int = N_VERIFY):
    """A baseline name or a VanillaNet variant name (random weights either way)."""
    from ..model.variants import VARIANTS

    if name in VARIANTS:
        return prepare_vanillanet_random(name, input_size, seed, inputs, n_verify=n_verify)
    return prepare_baseline(name, input_size, inputs, seed, n_verify=n_verify)


__all__ = ["N_VERIFY", "prepare_any", "prepare_baseline", "prepare_vanillanet_random"]
