"""int8 inference: dynamic quantization of the encoder's Linear layers, with SmoothQuant-style scales.

Why plain dynamic int8 loses accuracy here (BENCHMARKS.md, "int8"): dynamic quantization gives each
Linear layer's input one scale per tensor, and a few input channels carry values 5-10x larger than the
rest (channel outliers: the FFN down-projection's input in some layers reaches 60 where the other
channels stay under 6; the residual stream has a few such channels too). One scale wide enough for the
outliers leaves the ordinary channels a handful of int8 steps.

The fix (Xiao et al. 2023, SmoothQuant): move part of that range from the activations into the weights,
which are quantized per output channel and tolerate it. For a Linear ``y = x W^T`` and per input
channel ``j``: ``s_j = a_j^alpha / w_j^(1 - alpha)`` with ``a_j`` the largest ``|x_j|`` seen on
calibration text and ``w_j`` the largest ``|W_ij|``; then ``y = (x / s) (W s)^T`` exactly in fp32, and the
int8 version quantizes ``x / s`` and ``W s``. The per-channel activation maxima are measured once, at
training time, on training articles, and saved in the model dir (``int8_calibration.safetensors``);
a model dir without them gets plain dynamic int8, as before.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path

import torch

INT8_CALIBRATION = "int8_calibration.safetensors"
CALIBRATION_ARTICLES = 64  # training articles whose windows the activation maxima are taken over
# int8's fallback when quantizing every layer costs too much on dev: the FFN down-projections (a third
# of the Linear FLOPs, and most of the drift from fp32: BENCHMARKS.md, "int8") stay fp32
FFN_DOWN_FP32 = (r"layer\.\d+\.output\.dense",)
SMOOTH_ALPHA = 0.85  # migration strength: the least fp32 drift on the demo dev set (BENCHMARKS.md, "int8")


def int8_targets(encoder: torch.nn.Module, keep_fp32: Sequence[str] = ()) -> list[str]:
    """Names of the encoder's Linear layers to quantize: all of them but those a ``keep_fp32`` regex
    matches (``re.search`` on the module name, e.g. ``r"layer\\.11\\.output\\.dense"``)."""
    pats = [re.compile(p) for p in keep_fp32]
    return [
        name
        for name, m in encoder.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(p.search(name) for p in pats)
    ]


class SmoothedInput(torch.nn.Module):
    """``linear(x * inv_scale)``: a Linear whose weight columns were multiplied by ``1 / inv_scale``."""

    def __init__(self, inv_scale: torch.Tensor, linear: torch.nn.Module):
        super().__init__()
        self.register_buffer("inv_scale", inv_scale)
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale.to(x.dtype))


def smoothing_scale(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float = SMOOTH_ALPHA) -> torch.Tensor:
    """Per input channel ``s_j = a_j^alpha / w_j^(1-alpha)`` (both floored at 1e-5), for ``x / s`` and ``W s``."""
    a = act_absmax.float().clamp(min=1e-5)
    w = weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (a.pow(alpha) / w.pow(1 - alpha)).clamp(min=1e-5)


def _set_module(root: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def quantize_int8(model, keep_fp32: Sequence[str] = (), calibration: dict | None = None, alpha: float | None = None):
    """Dynamic int8 quantization of the encoder's Linear layers (weights int8 per output channel,
    activations quantized on the fly), in place; the small heads, and encoder layers named by
    ``keep_fp32`` (regexes, see :func:`int8_targets`), stay fp32.

    ``calibration``: per-channel activation maxima (:func:`calibrate`); default the model's own
    ``int8_calibration`` attribute (set when its model dir has them). Layers with an entry are smoothed
    first (module docstring); the others are quantized plainly. ``alpha``: default the model's
    ``int8_alpha`` attribute (saved with the calibration), else ``SMOOTH_ALPHA``.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from sikap.ensemble import member_models

    keep_fp32 = keep_fp32 or ()
    if calibration is None:
        calibration = getattr(model, "int8_calibration", None) or {}
    if alpha is None:
        alpha = getattr(model, "int8_alpha", None) or SMOOTH_ALPHA
    model = model.float().eval()
    for i, member in enumerate(member_models(model)):  # every member of a seed ensemble
        spec = {}
        for name in int8_targets(member.encoder, keep_fp32):
            key = f"{i}/{name}"
            if key in calibration:
                linear = member.encoder.get_submodule(name)
                s = smoothing_scale(calibration[key], linear.weight, alpha)
                with torch.no_grad():
                    linear.weight.mul_(s)
                _set_module(member.encoder, name, SmoothedInput(1.0 / s, linear))
                spec[f"{name}.linear"] = per_channel_dynamic_qconfig
            else:
                spec[name] = per_channel_dynamic_qconfig
        if spec:
            quantize_dynamic(member.encoder, spec, dtype=torch.qint8, inplace=True)
    return model


@torch.no_grad()
def calibrate(model, builder, meta: dict, texts: Sequence[str], *, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Per input channel, the largest ``|x|`` every encoder Linear layer sees over ``texts``' windows
    (fp32, on a CPU copy of ``model``); keys ``"{member}/{module name}"``."""
    from sikap.ensemble import member_models
    from sikap.predict import Predictor

    twin = copy.deepcopy(model).cpu().float().eval()
    found: dict[str, torch.Tensor] = {}
    handles = []

    def hook(key: str):
        def record(_module, inputs, _output):
            x = inputs[0].detach().float()
            m = x.reshape(-1, x.shape[-1]).abs().amax(dim=0)
            found[key] = m if key not in found else torch.maximum(found[key], m)

        return record

    for i, member in enumerate(member_models(twin)):
        for name in int8_targets(member.encoder):
            handles.append(member.encoder.get_submodule(name).register_forward_hook(hook(f"{i}/{name}")))
    try:
        pred = Predictor(twin, builder, meta, precision="fp32", batch_size=batch_size)
        for s in range(0, len(texts), 32):
            pred.predict(list(texts[s : s + 32]))
    finally:
        for h in handles:
            h.remove()
    return found


def attach_calibration(model, texts: Sequence[str], builder, meta: dict) -> dict:
    """Measure the activation maxima on ``texts`` (at most CALIBRATION_ARTICLES) and attach them to
    ``model`` (``int8_calibration``, ``int8_alpha``), which ``quantize_int8`` and ``save_model_dir`` read.
    Returns what ``sikap.json`` records about it."""
    texts = list(texts)
    if len(texts) > CALIBRATION_ARTICLES:  # evenly spread over the file, not its first articles
        step = len(texts) / CALIBRATION_ARTICLES
        texts = [texts[int(i * step)] for i in range(CALIBRATION_ARTICLES)]
    model.int8_calibration = calibrate(model, builder, meta, texts)
    model.int8_alpha = SMOOTH_ALPHA
    return {"file": INT8_CALIBRATION, "articles": len(texts), "alpha": SMOOTH_ALPHA}


def save_calibration(model, out_dir: Path) -> bool:
    """Write ``model``'s int8 calibration into ``out_dir`` (a stale file is removed); True when written."""
    from safetensors.torch import save_file

    path = Path(out_dir) / INT8_CALIBRATION
    path.unlink(missing_ok=True)
    calibration = getattr(model, "int8_calibration", None)
    if not calibration:
        return False
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in calibration.items()}
    alpha = getattr(model, "int8_alpha", None) or SMOOTH_ALPHA
    save_file(state, str(path), metadata={"format": "pt", "alpha": str(alpha)})
    return True


def load_calibration(model, path: Path) -> None:
    """Attach the calibration saved at ``path`` to ``model``; ValueError when the file is unreadable or
    does not fit the model's encoder."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            alpha = float((f.metadata() or {}).get("alpha", SMOOTH_ALPHA))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ValueError(f"{path}: cannot be read as int8 calibration ({type(e).__name__}: {e})") from None
    from sikap.ensemble import member_models

    members = member_models(model)
    for key, v in state.items():
        idx, _, name = key.partition("/")
        try:
            linear = members[int(idx)].encoder.get_submodule(name)
        except (ValueError, IndexError, AttributeError):
            raise ValueError(f"{path}: entry {key!r} names no Linear layer of this model") from None
        if not isinstance(linear, torch.nn.Linear) or v.shape != (linear.in_features,):
            raise ValueError(f"{path}: entry {key!r} has shape {tuple(v.shape)}, not this model's layer") from None
    model.int8_calibration, model.int8_alpha = state, alpha
