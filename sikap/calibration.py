"""Temperature scaling of a sikap model's final probabilities, shared by `classify` and `evaluate`.

Where the temperature applies: to the *final* probabilities of each head, i.e. after the encoder
and the lexical model are blended (``sikap.lexical.blend``). The blend is a mixture of
probabilities, not of logits, so there is no single logit vector to divide; instead the blended
probabilities are turned back into scores (``log p`` for a softmax head, ``logit p`` per label for
multi-label topics) and those are divided by the head's temperature ``T``:

- softmax heads (stance, single-label topics): ``softmax(log p / T)``, i.e. ``p ** (1/T)``
  renormalized; without a lexical model this is exactly ``softmax(logits / T)``;
- multi-label topics: ``sigmoid(logit(p) / T)`` per topic; without a lexical model exactly
  ``sigmoid(logits / T)``.

``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens under-confident ones; the
ranking of classes (hence the stance label and a single-label topic) never changes. One
temperature per head is fitted on dev after training (``sikap.training.calibration``) and saved
in ``sikap.json`` as ``topics.temperature`` and ``stance.temperature``; model directories
written before it load with ``T = 1`` (unchanged probabilities). Per-topic thresholds of
multi-label models are tuned on the calibrated probabilities.

The lexical model's own temperature (``train.lexical_temperature``) is a different knob: it
rescales the lexical component before the blend weight is chosen.
"""

from __future__ import annotations

import numpy as np

UNCERTAIN = "uncertain"  # the label `classify --min-confidence` gives a low-confidence decision
HEADS = ("topics", "stance")


def apply_temperature(probs: np.ndarray, t: float, *, multi_label: bool) -> np.ndarray:
    """Probabilities whose scores (recovered from ``probs``) are divided by ``t``.

    Args:
        probs: (..., C) rows summing to one (softmax head) or independent label probabilities
            (``multi_label``).
        t: the temperature (> 0); 1 returns ``probs`` unchanged.
    """
    if t == 1.0:
        return probs
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / t))
    z = np.log(p) / t
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def head_temperatures(meta: dict) -> dict[str, float]:
    """``{"topics": T, "stance": T}`` from ``sikap.json`` content (1 where none was fitted)."""
    return {h: float((meta.get(h) or {}).get("temperature") or 1.0) for h in HEADS}


def check_uncertain_label(meta: dict) -> None:
    """``--min-confidence`` needs a label no topic or stance class already uses."""
    from sikap.modelmeta import ModelDirError

    used = [*((meta.get("topics") or {}).get("names") or []), *((meta.get("stance") or {}).get("classes") or [])]
    if UNCERTAIN in used:
        raise ModelDirError(
            f"--min-confidence: this model has a label named {UNCERTAIN!r}, so low-confidence decisions could "
            "not be told apart from it; drop the option or rename that label and retrain"
        )
