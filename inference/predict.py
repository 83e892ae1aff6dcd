"""The predictor lives in :mod:`sikap.predict` (shared by training and inference); re-exported here."""

from sikap.predict import *  # noqa: F403
from sikap.predict import ArticlePrediction, Predictor, cpu_supports_bf16, quantize_int8, resolve_precision

__all__ = ["ArticlePrediction", "Predictor", "cpu_supports_bf16", "quantize_int8", "resolve_precision"]
