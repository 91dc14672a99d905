"""Single beats in the Kaggle heartbeat layout → AAMI class, with ``models/ecg_kaggle_beats``.

The model (``streamdx train kaggle-beats``) reads one beat per row: 187 values at 125 Hz
from the R peak, min–max scaled to [0, 1], zero-padded — the layout of the published Kaggle
MIT-BIH CSVs and of :func:`streamdx_inference.ecg.kaggle.kaggle_beats`. It was trained
**intra-patient** on MITDB (random split by beat), so its figures overstate what it does on
a new patient; it is meant for such single-beat files only, never for streams (those are
labelled by :mod:`streamdx_inference.ecg.labeler`).

onnxruntime and numpy only (no torch). Rows that are not a valid beat (NaN, ±inf, values
outside [0, 1]) are reported by row and left unclassified; they never stop the others.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BEAT_LEN",
    "CLASSES",
    "MODEL_NAME",
    "BeatProblem",
    "KaggleBeatClassifier",
    "KaggleResult",
    "check_beats",
]

MODEL_NAME = "ecg_kaggle_beats"
#: Samples per beat (125 Hz).
BEAT_LEN = 187
#: Output classes, in the model's column order.
CLASSES = ("N", "S", "V", "F", "Q")
#: Values this far outside [0, 1] are rounding (text CSVs), clipped; beyond it the row is refused.
RANGE_SLACK = 1e-6
_BATCH = 4096


@dataclass(frozen=True)
class BeatProblem:
    """Why row ``row`` (0-based) is not a valid beat."""

    row: int
    reason: str


@dataclass
class KaggleResult:
    """Classes and probabilities of ``n`` rows; invalid rows have class ``None`` and NaN probabilities."""

    classes: list[str | None]
    probs: npt.NDArray[np.float32]  # (n, 5), columns in CLASSES order
    valid: npt.NDArray[np.bool_]
    problems: list[BeatProblem] = field(default_factory=list)

    @property
    def class_index(self) -> npt.NDArray[np.int64]:
        """Arg-max column per row, -1 for invalid rows."""
        out = np.full(self.valid.size, -1, np.int64)
        if self.valid.any():
            out[self.valid] = self.probs[self.valid].argmax(axis=1)
        return out


def check_beats(x: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], list[BeatProblem]]:
    """Validate rows of beats.

    Parameters
    ----------
    x : array_like, shape (n, 187)
        Beats in [0, 1] (a single beat of shape (187,) is one row).

    Returns
    -------
    beats : ndarray of float32, shape (n, 187)
        The beats, rounding outside [0, 1] (at most 1e-6) clipped; invalid rows zeroed.
    valid : ndarray of bool, shape (n,)
    problems : list of BeatProblem
        One per invalid row (the first offending value named).

    Raises
    ------
    ValueError
        If ``x`` is not numeric or not (n, 187).
    """
    try:
        a = np.asarray(x)
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"beats must be numbers ({exc})") from None
    if a.ndim == 1 and a.size == BEAT_LEN:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != BEAT_LEN:
        raise ValueError(f"beats must have shape (n, {BEAT_LEN}) — {BEAT_LEN} values per beat at 125 Hz — "
                         f"not {a.shape}")  # fmt: skip
    finite = np.isfinite(a)
    inside = (a >= -RANGE_SLACK) & (a <= 1.0 + RANGE_SLACK)
    bad = ~(finite & inside)
    valid = ~bad.any(axis=1)
    problems: list[BeatProblem] = []
    for r in np.flatnonzero(~valid):
        k = int(np.argmax(bad[r]))
        v = float(a[r, k])
        what = "not a number (NaN)" if math.isnan(v) else "infinite" if math.isinf(v) else f"{v:g}, outside [0, 1]"
        n_bad = int(bad[r].sum())
        more = f" ({n_bad} such values in the row)" if n_bad > 1 else ""
        problems.append(BeatProblem(int(r), f"value {k + 1} is {what}{more}"))
    beats = np.clip(a, 0.0, 1.0).astype(np.float32)
    beats[~valid] = 0.0
    return beats, valid, problems


class KaggleBeatClassifier:
    """The ``ecg_kaggle_beats`` ONNX model (``model.onnx`` + ``model.json``) on onnxruntime."""

    def __init__(self, model_dir: Path, *, threads: int = 1, int8: bool = False,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:  # fmt: skip
        import onnxruntime as ort

        d = Path(model_dir)
        path = d / ("model.int8.onnx" if int8 else "model.onnx")
        if not path.exists() or not (d / "model.json").exists():
            raise FileNotFoundError(f"Kaggle beat model not found in {d} (run `streamdx train kaggle-beats`)")
        self.meta: dict[str, Any] = json.loads((d / "model.json").read_text())
        classes = tuple(self.meta.get("classes", CLASSES))
        if classes != CLASSES:
            raise ValueError(f"{d}: unexpected classes {classes} (expected {CLASSES})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=list(providers))
        self._input = self._session.get_inputs()[0].name
        self.path = path

    @classmethod
    def from_models_dir(cls, models_dir: Path, **kw: Any) -> KaggleBeatClassifier:
        return cls(Path(models_dir) / MODEL_NAME, **kw)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES

    def predict_proba(self, beats: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities of already validated beats (n, 187) float32, in batches."""
        out = [self._session.run(None, {self._input: np.ascontiguousarray(beats[i : i + _BATCH], np.float32)})[0]
               for i in range(0, beats.shape[0], _BATCH)]  # fmt: skip
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(CLASSES)), np.float32)

    def classify(self, x: npt.ArrayLike) -> KaggleResult:
        """Validate ``x`` (n, 187) with :func:`check_beats` and classify its valid rows.

        Raises ``ValueError`` only for an input of the wrong shape or type; bad rows are
        reported in :attr:`KaggleResult.problems`.
        """
        beats, valid, problems = check_beats(x)
        probs = np.full((beats.shape[0], len(CLASSES)), np.nan, np.float32)
        if valid.any():
            probs[valid] = self.predict_proba(beats[valid])
        idx = np.where(valid, np.nan_to_num(probs, nan=0.0).argmax(axis=1), -1)
        return KaggleResult([CLASSES[i] if i >= 0 else None for i in idx], probs, valid, problems)
