"""``classify --precision auto``: the inference precision for this CPU and this model, and why.

bf16 where the CPU runs it natively (AVX512-BF16 or AMX). Elsewhere bf16 is emulated and slower
than fp32, so the candidates are int8 (dynamic quantization; faster than fp32 on such CPUs) and
fp32, and int8 is taken only when the check recorded at training time (``precision_check`` in
``sikap.json``, written by :mod:`sikap.training.precision_check`) measured that it costs at most
:data:`MAX_LOSS` macro-F1 on the model's own dev set. A model dir without that check keeps fp32:
an unmeasured int8 can cost far more (0.20 topics macro-F1 on the demo, issue 10).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sikap import predict

MAX_LOSS = 0.01  # the largest dev macro-F1 drop (worst task) at which auto picks a faster precision


@dataclass(frozen=True)
class PrecisionDecision:
    precision: str  # fp32, bf16 or int8
    reason: str  # one line for the user


def choose_precision(meta: dict, requested: str = "auto", device: str = "cpu") -> PrecisionDecision:
    """The precision to run ``meta``'s model at; ``requested`` other than auto is kept as asked."""
    if requested != "auto":
        return PrecisionDecision(requested, "as requested")
    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
        return PrecisionDecision("bf16" if bf16 else "fp32", f"GPU {'with' if bf16 else 'without'} bf16")
    if predict.cpu_supports_bf16():
        return PrecisionDecision("bf16", "this CPU runs bf16 natively (avx512_bf16 or amx)")
    check = meta.get("precision_check") or {}
    int8 = check.get("int8") or {}
    loss = int8.get("loss")
    if loss is None:
        why = int8.get("error") or "the model dir has no precision check recorded at training time"
        return PrecisionDecision(
            "fp32",
            f"no native bf16 on this CPU, and int8 is unmeasured for this model ({why}); --precision int8 forces it",
        )
    n = check.get("dev_records", "?")
    what = "int8 (FFN down-projections in fp32)" if int8.get("keep_fp32") else "int8"
    if loss <= MAX_LOSS:
        return PrecisionDecision(
            "int8",
            f"no native bf16 on this CPU; {what} lost {loss:.3f} dev macro-F1 against fp32 "
            f"(<= {MAX_LOSS}, {n} dev records, checked at training time)",
        )
    return PrecisionDecision(
        "fp32",
        f"no native bf16 on this CPU; {what} would lose {loss:.3f} dev macro-F1 against fp32 "
        f"(> {MAX_LOSS}, {n} dev records, checked at training time)",
    )
