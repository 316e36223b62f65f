"""Run an artifact in its own runtime and compare it with the fused PyTorch model.

Limits per precision (relative error = ||artifact - torch|| / ||torch|| over all logits, and
top-1 agreement over the verification images). A conversion beyond them fails.
  fp32: rel err <= 1e-4, top-1 agreement >= 99%   (float32 reordering only; seen ~1e-6)
  fp16: rel err <= 1e-2, top-1 agreement >= 95%   (fp16 has ~3 decimal digits)
  int8: rel err <= 0.25, top-1 agreement >= 90%   (accuracy is judged on labels, see calibration)
An artifact whose output is probabilities (a Core ML classifier's dictionary, softmax inside)
is compared with softmax(torch logits) under the same limits; the record says which.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..devices.registry import get_runner
from ..errors import VerificationError
from ..metrics import Agreement, at_least, compare_logits, finite, within

LIMITS = {
    "fp32": {"rel_err": 1e-4, "top1_agree": 0.99},
    "fp16": {"rel_err": 1e-2, "top1_agree": 0.95},
    "int8": {"rel_err": 0.25, "top1_agree": 0.90},
}


@torch.no_grad()
def torch_reference(model: torch.nn.Module, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    model.eval()
    return np.concatenate([model(torch.from_numpy(inputs[i:i + batch])).numpy()
                           for i in range(0, len(inputs), batch)])


def run_artifact(runtime: str, artifact: Path, manifest: dict, inputs: np.ndarray,
                 **settings) -> tuple[np.ndarray, dict]:
    session = get_runner(runtime).load(artifact, manifest, **settings)
    return session.run_all(inputs), dict(session.settings)


def check_limits(agreement: Agreement, precision: str, require_agreement: bool = True) -> dict:
    """Within the precision's limits? `require_agreement=False` (random-weight nets, whose
    near-tied logits flip top-1 at the slightest change) judges the relative error alone."""
    limits = LIMITS[precision]
    passed = within(agreement.rel_err, limits["rel_err"]) and finite(agreement.max_abs) and (
        at_least(agreement.top1_agree, limits["top1_agree"]) or not require_agreement)
    out = {**agreement.as_dict(), "limits": limits, "passed": bool(passed)}
    if not require_agreement:
        out["agreement_required"] = False
        out["why"] = "random weights: top-1 agreement is recorded but not required (near-tied logits)"
    return out


def output_meaning(manifest: dict) -> str:
    """'probabilities' when the artifact outputs softmax probabilities (a classifier), else
    'logits': from the manifest's output meaning, or the converter's note of it."""
    meaning = str(manifest.get("output", {}).get("meaning", ""))
    noted = manifest.get("conversion", {}).get("output_meaning")
    return "probabilities" if meaning.startswith("probabilities") or noted == "probabilities" else "logits"


def reference_for(manifest: dict, reference: np.ndarray) -> np.ndarray:
    """The fused model's logits in the artifact's output meaning (softmax for probabilities)."""
    if output_meaning(manifest) != "probabilities":
        return reference
    z = np.asarray(reference, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def verify_artifact(runtime: str, artifact: Path, manifest: dict, inputs: np.ndarray,
                    reference: np.ndarray, precision: str, raise_on_fail: bool = True,
                    require_agreement: bool = True, **settings) -> dict:
    """Verification record for the manifest; raises VerificationError beyond the limits
    (unless `raise_on_fail` is False: the accuracy budget then decides, see convert.py)."""
    outputs, used = run_artifact(runtime, artifact, manifest, inputs, **settings)
    result = check_limits(compare_logits(outputs, reference_for(manifest, reference)), precision,
                          require_agreement)
    result.update({"runtime": runtime, "runtime_settings": used,
                   "compared": ("probabilities: the artifact's vs softmax of the fused PyTorch model's logits"
                                if output_meaning(manifest) == "probabilities" else "logits")})
    if not result["passed"] and raise_on_fail:
        raise verification_error(manifest["target"], precision, result)
    return result


def verification_error(target: str, precision: str, result: dict) -> VerificationError:
    lim = result["limits"]
    broken = "" if finite(result["rel_err"]) and finite(result["max_abs"]) else \
        " (NaN or inf in the outputs: not finite numbers)"
    return VerificationError(
        f"{target} {precision} artifact differs from the fused PyTorch model{broken}: "
        f"rel err {result['rel_err']:.3g} (limit {lim['rel_err']:g}), top-1 agreement "
        f"{100 * result['top1_agree']:.1f}% (limit {100 * lim['top1_agree']:.0f}%); nothing was written",
        hint="report this with the checkpoint; try another precision or target meanwhile"
             + ("; for int8, --max-drop with --eval-data keeps sensitive layers in float" if precision == "int8" else ""))
