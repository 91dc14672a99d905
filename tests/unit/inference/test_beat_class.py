"""The AAMI beat-class decision with the SVEB rule, and fitting the rule (pure unit tests)."""

from __future__ import annotations

import numpy as np
import pytest

from streamdx_inference.ecg.beat_class import AAMI_CLASSES, SvebRule, ecg_beat_classes, premature_normal_qrs
from streamdx_inference.ecg.features import BEAT_SAMPLES, N_SCALARS, RR_CONTEXT, SCALAR_NAMES, EcgFeatures
from streamdx_inference.ecg.training.sveb_fit import fit_sveb_rule

_LOG_RR = SCALAR_NAMES.index("log_rr_prev_over_mean")
RULE = SvebRule(log_rr_max=-0.2, qrs_dev_max=0.3)


def _feats(log_rr: list[float], dev: list[float]) -> EcgFeatures:
    n = len(log_rr)
    sc = np.zeros((n, N_SCALARS), np.float32)
    sc[:, _LOG_RR] = log_rr
    rr = np.zeros((n, 3, RR_CONTEXT), np.float32)
    rr[:, 2, -1] = dev  # this beat's QRS deviation
    rr[:, 2, -2] = 5.0  # an earlier beat's: must not matter
    return EcgFeatures(np.zeros((n, 2, BEAT_SAMPLES), np.float32), rr, sc)


def _cls(idx: np.ndarray) -> list[str]:
    return [AAMI_CLASSES[i] for i in idx.tolist()]


#                     N     S     V     F     Q
P_N = [0.90, 0.05, 0.03, 0.01, 0.01]
P_S_THEN_V = [0.10, 0.50, 0.35, 0.03, 0.02]
P_S_THEN_N = [0.40, 0.50, 0.05, 0.03, 0.02]
P_V = [0.10, 0.20, 0.65, 0.03, 0.02]
P_F = [0.30, 0.05, 0.05, 0.58, 0.02]


@pytest.mark.parametrize(
    ("probs", "log_rr", "dev", "expected"),
    [
        (P_N, -0.5, 0.1, "S"),  # early with a normal QRS: S, although the network says N
        (P_N, -0.1, 0.1, "N"),  # not early enough
        (P_N, -0.5, 0.6, "N"),  # early but its QRS deviates: not S (the network's N stands)
        (P_S_THEN_N, 0.0, 0.1, "N"),  # the network's S on a beat in time with a normal QRS: N
        (P_S_THEN_V, 0.0, 0.1, "N"),  # ... even when its runner-up is V
        (P_S_THEN_V, 0.0, 0.9, "V"),  # the network's S with a deviating QRS: its runner-up, which may be V
        (P_S_THEN_N, -0.5, 0.9, "N"),  # ... or N
        (P_S_THEN_V, -0.5, 0.1, "S"),  # the network's S on an early normal beat stays S
        (P_V, -0.5, 0.1, "V"),  # the network's V, F and Q decisions stand
        (P_F, -0.5, 0.1, "F"),
    ],
)
def test_the_rule_decides_n_versus_s(probs: list[float], log_rr: float, dev: float, expected: str) -> None:
    p = np.array([probs], np.float32)
    assert _cls(ecg_beat_classes(p, _feats([log_rr], [dev]), RULE)) == [expected]


def test_without_a_rule_the_network_decides() -> None:
    p = np.array([P_N, P_S_THEN_N, P_V], np.float32)
    f = _feats([-0.5, 0.0, -0.5], [0.1, 0.1, 0.1])
    assert _cls(ecg_beat_classes(p, f, None)) == ["N", "S", "V"]
    assert ecg_beat_classes(np.zeros((0, 5), np.float32), _feats([], []), RULE).size == 0


def test_rule_thresholds_are_strict_and_validated() -> None:
    f = _feats([-0.2, -0.2001, -0.3], [0.1, 0.1, 0.3])
    assert premature_normal_qrs(f, RULE).tolist() == [False, True, False]
    for bad in ((0.1, 0.3), (-0.2, 0.0), (float("nan"), 0.3), (-0.2, float("inf"))):
        with pytest.raises(ValueError):
            SvebRule(*bad)
    assert SvebRule.from_meta({}) is None
    assert SvebRule.from_meta({"sveb_rule": RULE.to_dict()}) == RULE
    with pytest.raises(ValueError):
        SvebRule.from_meta({"sveb_rule": {"log_rr_max": -0.2}})
    with pytest.raises(ValueError):
        SvebRule.from_meta({"sveb_rule": {"log_rr_max": 0.5, "qrs_dev_max": 0.3}})


def test_the_fit_finds_the_separating_thresholds() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    y = np.zeros(n, np.int64)
    y[:400] = AAMI_CLASSES.index("S")
    y[400:800] = AAMI_CLASSES.index("V")
    log_rr = rng.normal(0.0, 0.05, n)
    log_rr[:800] = rng.uniform(-0.6, -0.3, 800)  # S and V beats are early
    dev = rng.uniform(0.0, 0.15, n)
    dev[400:800] = rng.uniform(0.45, 2.0, 400)  # V beats deviate from the template
    rule, info = fit_sveb_rule(_feats(log_rr.tolist(), dev.tolist()), y)
    assert -0.3 <= rule.log_rr_max <= -0.15 and 0.15 < rule.qrs_dev_max <= 0.45
    assert info["f1"] == pytest.approx(1.0) and info["n_s"] == 400
    with pytest.raises(ValueError, match="no S beat"):
        fit_sveb_rule(_feats([0.0], [0.1]), np.zeros(1, np.int64))


def test_without_s_gives_s_beats_the_runner_up() -> None:
    from streamdx_inference.ecg.beat_class import without_s

    p = np.array([P_S_THEN_N, P_S_THEN_V, P_V, P_N], np.float32)
    cls = np.array([1, 1, 2, 1])  # S, S, V, S (the last by the rule, the network says N)
    assert _cls(without_s(p, cls)) == ["N", "V", "V", "N"]
    assert without_s(np.zeros((0, 5), np.float32), np.zeros(0, np.intp)).size == 0
    # a normal QRS makes a vetoed S beat N whatever the runner-up; V stays V
    assert _cls(without_s(p, cls, np.array([True, True, True, False]))) == ["N", "N", "V", "N"]
    assert _cls(without_s(p, cls, np.array([False, False, False, False]))) == ["N", "V", "V", "N"]


def test_in_af_an_s_beat_of_the_rule_is_n() -> None:
    from streamdx_inference.ecg.beat_class import normal_qrs, without_s

    p = np.array([P_S_THEN_V, P_N, P_V], np.float32)
    f = _feats([-0.5, -0.5, -0.5], [0.1, 0.1, 0.1])
    cls = ecg_beat_classes(p, f, RULE)
    assert _cls(cls) == ["S", "S", "V"]
    assert _cls(without_s(p, cls, normal_qrs(f, RULE))) == ["N", "N", "V"]
    assert normal_qrs(f, None) is None


def test_the_cross_validated_policies_differ_only_on_vetoed_s_beats() -> None:
    from streamdx_inference.ecg.training.sveb_cv import POLICIES, vetoed_s_policies

    # S by the rule; vetoed S with a normal QRS (runner-up V); vetoed S with a deviating QRS; V
    p = np.array([P_S_THEN_V, P_S_THEN_V, P_S_THEN_V, P_V], np.float32)
    f = _feats([-0.5, 0.0, 0.0, -0.5], [0.1, 0.1, 0.9, 0.1])
    out = {k: _cls(v) for k, v in vetoed_s_policies(p, f, RULE).items()}
    assert set(out) == set(POLICIES)
    assert out["runner_up"] == ["S", "V", "V", "V"]
    assert out["normal_qrs_n"] == ["S", "N", "V", "V"] == _cls(ecg_beat_classes(p, f, RULE))
    assert out["all_n"] == ["S", "N", "N", "V"]
    assert out["argmax"] == ["S", "S", "S", "V"]
