"""Pure streaming ECG DSP core (numpy / scipy / PyWavelets, inner loops compiled with numba).

Top-level API used by the dsp service::

    state = ecg_stream_init(fs, start_sample=0)
    state, beats = ecg_stream_process(state, chunk_mv)
    state, beats = ecg_stream_flush(state)
    blob = ecg_state_dumps(state); state = ecg_state_loads(blob)

The stage functions (offset removal, band-pass, wavelet denoising, R-peak
detection, segmentation, RR features, signal quality) are exported for reuse and
testing.
"""

from streamdx_dsp.core.bandpass import (
    BandpassState,
    ecg_bandpass,
    ecg_bandpass_init,
    ecg_bandpass_sos,
    ecg_bandpass_tapped,
)
from streamdx_dsp.core.offset import OffsetState, ecg_offset_init, ecg_remove_offset
from streamdx_dsp.core.quality import (
    BeatQuality,
    ecg_quality_bins,
    ecg_quality_flags,
    ecg_quality_score,
    ecg_quality_windows,
)
from streamdx_dsp.core.rpeaks import RPeakParams, RPeakState, ecg_rpeak_params, ecg_rpeaks, ecg_rpeaks_init
from streamdx_dsp.core.rr_features import ecg_rr_features
from streamdx_dsp.core.segmentation import (
    BEAT_LENGTH,
    BEAT_WINDOWS,
    FIXED_POST_S,
    FIXED_PRE_S,
    BeatWindow,
    beat_window_span,
    ecg_segment_beats,
)
from streamdx_dsp.core.signal_loss import (
    LOST_RUN_S,
    SignalLossState,
    lost_runs,
    merge_intervals,
    signal_loss_close,
    signal_loss_from_dict,
    signal_loss_init,
    signal_loss_overlap,
    signal_loss_process,
    signal_loss_to_dict,
)
from streamdx_dsp.core.state_codec import STATE_FORMAT_VERSION, ecg_state_dumps, ecg_state_loads
from streamdx_dsp.core.stream import (
    DEFAULT_WINDOW,
    Beat,
    EcgStreamState,
    ecg_stream_flush,
    ecg_stream_horizon,
    ecg_stream_init,
    ecg_stream_process,
    ecg_stream_unemitted,
)
from streamdx_dsp.core.wavelet_denoise import ecg_wavelet_denoise, ecg_wavelet_stream, ecg_wavelet_stream_init
from streamdx_dsp.core.wavelet_stream import (
    WaveletStream,
    ecg_wavelet_reference,
    ecg_wavelet_stream_v2,
    ecg_wavelet_stream_v2_init,
)

__all__ = [
    "BEAT_LENGTH",
    "BEAT_WINDOWS",
    "DEFAULT_WINDOW",
    "FIXED_POST_S",
    "FIXED_PRE_S",
    "LOST_RUN_S",
    "STATE_FORMAT_VERSION",
    "BandpassState",
    "Beat",
    "BeatQuality",
    "BeatWindow",
    "EcgStreamState",
    "OffsetState",
    "RPeakParams",
    "RPeakState",
    "SignalLossState",
    "WaveletStream",
    "beat_window_span",
    "ecg_bandpass",
    "ecg_bandpass_init",
    "ecg_bandpass_sos",
    "ecg_bandpass_tapped",
    "ecg_offset_init",
    "ecg_quality_bins",
    "ecg_quality_flags",
    "ecg_quality_score",
    "ecg_quality_windows",
    "ecg_remove_offset",
    "ecg_rpeak_params",
    "ecg_rpeaks",
    "ecg_rpeaks_init",
    "ecg_rr_features",
    "ecg_segment_beats",
    "ecg_state_dumps",
    "ecg_state_loads",
    "ecg_stream_flush",
    "ecg_stream_horizon",
    "ecg_stream_init",
    "ecg_stream_process",
    "ecg_stream_unemitted",
    "ecg_wavelet_denoise",
    "ecg_wavelet_reference",
    "ecg_wavelet_stream",
    "ecg_wavelet_stream_init",
    "ecg_wavelet_stream_v2",
    "ecg_wavelet_stream_v2_init",
    "lost_runs",
    "merge_intervals",
    "signal_loss_close",
    "signal_loss_from_dict",
    "signal_loss_init",
    "signal_loss_overlap",
    "signal_loss_process",
    "signal_loss_to_dict",
]
