"""The quantizable layers of a fused VanillaNet, by torch module name.

These names are the common language between `calibrate` (statistics, sensitivity), the
accuracy budget (which layers to keep in float) and every converter (each maps them to its
own graph's node names).
"""
from __future__ import annotations

from torch import nn

from ..model.layers import Activation
from ..model.rewrites import DepthwiseOnly


def quantizable_layers(model: nn.Module) -> list[str]:
    """Module names of every conv (the activation's depthwise conv included), in forward order.

    Deploy form: stem.0 (4x4 conv), stem.1 (activation), stages.i.conv, stages.i.act, cls.2
    (the same names after model/rewrites.py, whose depthwise-only activation keeps `act`).
    """
    kinds = (nn.Conv2d, Activation, DepthwiseOnly)
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


def check_layer_names(model: nn.Module, names) -> list[str]:
    """`names` in forward order; an unknown name is refused with the list of real layers."""
    from ..errors import VanillaNetEdgeError

    layers = quantizable_layers(model)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise VanillaNetEdgeError(f"cannot keep {', '.join(unknown)} in float: no such quantizable layer",
                                  hint=f"layers: {', '.join(layers)}")
    return [n for n in layers if n in set(names)]


def select_layers(model: nn.Module, names, graph_map: dict, graph: str) -> dict:
    """The graph nodes of the layers `names` (checked as above), from a converter's own
    torch-name -> node(s) map; a layer the map lacks is an error naming what the map holds."""
    from ..errors import ConversionError

    wanted = check_layer_names(model, names)
    missing = [n for n in wanted if n not in graph_map]
    if missing:
        raise ConversionError(f"no {graph} node found for layer(s) {', '.join(missing)}; the graph "
                              f"names only {', '.join(graph_map) or 'no torch modules'}")
    return {n: graph_map[n] for n in wanted}
