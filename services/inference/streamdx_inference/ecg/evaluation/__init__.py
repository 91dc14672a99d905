"""Evaluations of the ECG models (``streamdx eval af|beats|cinc2017``)."""
