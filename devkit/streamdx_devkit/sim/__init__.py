"""Simulators: synthetic ECG with ground truth (:mod:`streamdx_devkit.sim.ecg`) and the device
simulator client that streams it to ingest (:mod:`streamdx_devkit.sim.device`).

Only the pure generator API is re-exported here; the device client (httpx, websockets,
wfdb) is imported from :mod:`streamdx_devkit.sim.device` when needed.
"""

from streamdx_devkit.sim.ecg import (
    SCENARIO_NAMES,
    NoiseSpec,
    RhythmInterval,
    Scenario,
    SyntheticEcg,
    adc_to_mv,
    ecg_synthesize,
    mv_to_adc,
)

__all__ = [
    "SCENARIO_NAMES",
    "NoiseSpec",
    "RhythmInterval",
    "Scenario",
    "SyntheticEcg",
    "adc_to_mv",
    "ecg_synthesize",
    "mv_to_adc",
]
