"""Whole-slide glomerulus detection: generated slides, tiling, ONNX detector, cross-tile merge, evaluation."""
