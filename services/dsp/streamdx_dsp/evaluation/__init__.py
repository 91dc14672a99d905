"""Evaluation and benchmark commands of the DSP core (``streamdx eval rpeaks``, ``streamdx bench dsp``)."""

__all__: list[str] = []
