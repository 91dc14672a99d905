"""Offline evaluations of the alert engines on annotated recordings.

The one place in the alerts package allowed to import inference code (the DSP and the ECG
models that produce the engine's input); the alerts service never imports this package, so
the runtime stays free of model and training dependencies. Pure scoring lives in
:mod:`streamdx_alerts.evaluation.episodes`; commands import everything heavy inside ``main``.
"""
