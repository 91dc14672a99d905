"""Training of the ECG models (needs the ``train`` extra: PyTorch, scikit-learn, onnx)."""
