"""ESR 60-minute forecasting: runtime forecaster (onnxruntime + numpy), training and evaluation.

Only :mod:`~streamdx_inference.esr.forecaster` and :mod:`~streamdx_inference.esr.features` are
needed at run time; ``models``, ``training`` and ``evaluation`` import torch / scikit-learn.
"""

__all__: list[str] = []
