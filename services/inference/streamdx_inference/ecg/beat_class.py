"""The AAMI beat-class decision: the network's probabilities, with supraventricular ectopy told by timing.

A supraventricular ectopic beat (SVEB, AAMI class S) is a beat that comes early with a
QRS like the patient's normal ones. A network trained on a few patients' S beats (MITDB DS1)
learns their P-wave morphology rather than the prematurity and finds few S beats in unseen
patients (de Chazal et al. 2004 and Llamedo & Martínez 2011 found the RR features the
part of their feature sets that carried SVEB detection across patients). So for a beat
the network calls N or S, the decision is taken by a two-threshold rule on features the
shared feature function already computes:

- prematurity: ``log(RR_prev / running mean RR)`` (scalar ``log_rr_prev_over_mean``),
- QRS normality: the beat's QRS deviation from the stream's running template (the last
  entry of the ``rr`` input's deviation channel).

A beat below both thresholds is S. A beat the network calls S that the rule vetoes is N when
its QRS is normal (it failed on prematurity alone: an on-time, normal-QRS beat) and otherwise
takes the network's most probable class other than S. The network's V, F and Q decisions stand.

Earlier versions gave every vetoed S beat the network's runner-up class, which for a
normal-QRS beat on time could be V. On MITDB DS1, 4-fold leave-records-out (a network and rule
trained on 3 folds, scored on the 4th; 4 runs of seeds and recipes), the normal-QRS-means-N
choice raised VEB +P by 0 to 1.7 points at a cost of at most 0.3 in Se; calling every vetoed S
beat N instead cost up to 4.7 points of VEB Se.
The thresholds are fitted on the training records (:func:`fit_sveb_rule`, called by
``streamdx train beats``) and stored in the model's ``model.json`` as ``sveb_rule``; a
model without one is decided by the network's arg-max alone.

References
----------
de Chazal P, O'Dwyer M, Reilly RB. Automatic classification of heartbeats using ECG
morphology and heartbeat interval features. IEEE Trans Biomed Eng 2004;51(7):1196-1206.

Llamedo M, Martínez JP. Heartbeat classification using feature selection driven by
database generalization criteria. IEEE Trans Biomed Eng 2011;58(3):616-625.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx_inference.ecg.features import SCALAR_NAMES, EcgFeatures

__all__ = ["AAMI_CLASSES", "SvebRule", "ecg_beat_classes", "normal_qrs", "premature_normal_qrs", "without_s"]

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
_N, _S = 0, 1
_LOG_RR = SCALAR_NAMES.index("log_rr_prev_over_mean")


@dataclass(frozen=True)
class SvebRule:
    """Thresholds of the SVEB rule (see the module docstring).

    Attributes
    ----------
    log_rr_max : float
        A beat is premature when ``log(RR_prev / running mean RR)`` is below this
        (e.g. -0.175: RR_prev shorter than 84 % of the mean).
    qrs_dev_max : float
        Its QRS is normal when its deviation from the running template
        (``log1p`` of the relative RMS difference) is below this.
    """

    log_rr_max: float
    qrs_dev_max: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.log_rr_max) and self.log_rr_max < 0):
            raise ValueError(f"SVEB rule: log_rr_max must be finite and negative, got {self.log_rr_max}")
        if not (math.isfinite(self.qrs_dev_max) and self.qrs_dev_max > 0):
            raise ValueError(f"SVEB rule: qrs_dev_max must be finite and positive, got {self.qrs_dev_max}")

    def to_dict(self) -> dict[str, float]:
        return {"log_rr_max": self.log_rr_max, "qrs_dev_max": self.qrs_dev_max}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SvebRule | None:
        """The rule stored in a model's ``model.json`` (``sveb_rule``), None when it has none.

        Raises
        ------
        ValueError
            On a malformed rule.
        """
        d = meta.get("sveb_rule")
        if d is None:
            return None
        try:
            return cls(float(d["log_rr_max"]), float(d["qrs_dev_max"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed sveb_rule in model metadata: {d!r}") from exc


def _qrs_like_template(feats: EcgFeatures, rule: SvebRule) -> npt.NDArray[np.bool_]:
    return np.asarray(feats.rr[:, 2, -1] < rule.qrs_dev_max)


def normal_qrs(feats: EcgFeatures, rule: SvebRule | None) -> npt.NDArray[np.bool_] | None:
    """Beats whose QRS deviation from the running template is below the rule's ``qrs_dev_max``
    (one flag per beat); None without a rule."""
    return None if rule is None else _qrs_like_template(feats, rule)


def premature_normal_qrs(feats: EcgFeatures, rule: SvebRule) -> npt.NDArray[np.bool_]:
    """Beats that come early with a normal QRS (the rule's S condition), one flag per beat."""
    return (feats.scalars[:, _LOG_RR] < rule.log_rr_max) & _qrs_like_template(feats, rule)


def ecg_beat_classes(
    probs: npt.NDArray[np.floating[Any]], feats: EcgFeatures, rule: SvebRule | None
) -> npt.NDArray[np.intp]:
    """AAMI class index (into :data:`AAMI_CLASSES`) of each beat.

    Parameters
    ----------
    probs : ndarray, shape (n, 5)
        The beat-class network's probabilities.
    feats : EcgFeatures
        The beats' features (the same rows).
    rule : SvebRule or None
        Without a rule, the arg-max of ``probs``.

    Returns
    -------
    ndarray of intp, shape (n,)
    """
    top = probs.argmax(axis=1)
    if rule is None or top.size == 0:
        return top
    normal = _qrs_like_template(feats, rule)
    rule_s = ((top == _N) | (top == _S)) & (feats.scalars[:, _LOG_RR] < rule.log_rr_max) & normal
    return np.where(rule_s, _S, without_s(probs, top, normal))


def without_s(
    probs: npt.NDArray[np.floating[Any]], classes: npt.NDArray[np.intp],
    normal_qrs: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.intp]:  # fmt: skip
    """``classes`` with each S replaced: by N where ``normal_qrs`` is set, otherwise by the
    network's most probable class other than S.

    Used for the rule's vetoed S (see the module docstring) and for beats in AF, where
    supraventricular ectopy is not defined: a beat the decision called S there has a normal QRS
    (the rule's condition), so it is N, an AF beat conducted early.

    Parameters
    ----------
    probs : ndarray, shape (n, 5)
        The beat-class network's probabilities.
    classes : ndarray of intp, shape (n,)
        Class indices (into :data:`AAMI_CLASSES`).
    normal_qrs : ndarray of bool, shape (n,), optional
        Beats whose QRS is like the stream's template; None: no beat is known to be.
    """
    if classes.size == 0:
        return classes
    no_s = probs.copy()
    no_s[:, _S] = -np.inf
    runner_up = no_s.argmax(axis=1)
    if normal_qrs is not None:
        runner_up = np.where(normal_qrs, _N, runner_up)
    return np.where(classes == _S, runner_up, classes)
