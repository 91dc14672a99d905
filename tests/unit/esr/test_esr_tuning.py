"""Fair ESR comparison: every learned model predicts last height + change and gets the same search,
run on the training part of a split only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamdx_devkit.sim.esr import esr_cohort_simulate
from streamdx_inference.esr.features import Series, add_change, change_target, concat_series, series_from_tubes
from streamdx_inference.esr.training import split_indices

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from streamdx_inference.esr import evaluation, tuning

COHORT = series_from_tubes(esr_cohort_simulate(40, seed=3))


def _split(seed: int = 0) -> tuple[Series, Series, Series]:
    fit, val, test = split_indices(len(COHORT), seed)
    return COHORT.take(fit), COHORT.take(val), COHORT.take(test)


def test_change_target_is_added_back_to_the_last_height() -> None:
    change = change_target(COHORT)
    np.testing.assert_allclose(change, COHORT.h60 - COHORT.heights[:, -1])
    np.testing.assert_allclose(add_change(COHORT, change), COHORT.h60)
    assert np.all(change <= 0)  # heights never rise: the change is a fall


def test_every_learned_model_gets_the_same_number_of_candidates() -> None:
    assert set(tuning.LEARNED_MODELS) == {"gru", "rf", "ffnn", "wdnn"}
    for m in tuning.LEARNED_MODELS:
        grid = tuning.candidates(m)
        assert len(grid) == tuning.SEARCH_SIZE
        assert len({tuning.params_label(p) for p in grid}) == tuning.SEARCH_SIZE  # all distinct
    with pytest.raises(ValueError, match="unknown model"):
        tuning.tune("svm", *_split()[:2], seed=0)


def test_forest_predicts_last_height_plus_its_predicted_change() -> None:
    f, v, te = _split()
    t = tuning.tune("rf", f, v, seed=0)
    assert len(t.val_mae) == tuning.SEARCH_SIZE
    assert t.params == tuning.candidates("rf")[int(np.argmin(t.val_mae))]
    fc = t.forecaster
    assert isinstance(fc, tuning.ForestForecaster)
    change = fc.forest.predict(tuning.flat_inputs(te, fc.scaler))
    np.testing.assert_allclose(fc.predict(te), te.heights[:, -1] + change)
    # the forest learned the change (a small fall), not the 60-minute height
    dev = concat_series(f, v)
    assert abs(change_target(dev).mean() - dev.h60.mean()) > 0.5
    fitted = fc.forest.predict(tuning.flat_inputs(dev, fc.scaler))
    assert abs(fitted.mean() - change_target(dev).mean()) < 0.05
    # refitted on the whole training part: each tree's bootstrap sample has len(fit + val) draws
    assert fc.forest.estimators_[0].tree_.weighted_n_node_samples[0] == len(dev)


def test_networks_predict_last_height_plus_their_output() -> None:
    import torch

    from streamdx_inference.esr.models import FFNN, LastPlusChange

    torch.manual_seed(0)
    inner = FFNN(6)
    x = torch.rand(8, 6)
    with torch.no_grad():
        np.testing.assert_allclose(LastPlusChange(inner, 4)(x).numpy(), (x[:, 4] + inner(x)).numpy(), rtol=1e-6)

    f, v, te = _split()
    t = tuning.tune("wdnn", f, v, seed=0)
    fc = t.forecaster
    assert isinstance(fc, tuning.FlatNetForecaster)
    assert fc.net.last_index == te.heights.shape[1] - 1
    with torch.no_grad():
        x_te = torch.as_tensor(tuning.flat_inputs(te, fc.scaler), dtype=torch.float32)
        change_scaled = fc.net.change_net(x_te).numpy().astype(np.float64)
    span = fc.scaler.h_max - fc.scaler.h_min
    np.testing.assert_allclose(fc.predict(te), te.heights[:, -1] + change_scaled * span, atol=1e-5)


class _LastValue:
    def predict(self, s: Series) -> Any:
        return s.heights[:, -1]


def test_the_search_only_ever_sees_the_training_part(monkeypatch: pytest.MonkeyPatch) -> None:
    # tubes identified by their age
    s = Series(COHORT.heights, np.arange(len(COHORT), dtype=np.float64), COHORT.sex, COHORT.h60)
    seen: dict[str, tuple[set[float], set[float]]] = {}

    def spy(model: str, fit: Series, val: Series, seed: int) -> tuning.Tuned:
        seen[model] = (set(fit.age.tolist()), set(val.age.tolist()))
        return tuning.Tuned(model, tuning.candidates(model)[0], [0.0] * tuning.SEARCH_SIZE, _LastValue())

    monkeypatch.setattr(tuning, "tune", spy)
    res = evaluation._one_run(s, run=3, base_seed=7, per_length=False)
    fit, val, test = split_indices(len(s), 7 * 100_003 + 3)
    assert set(seen) == set(tuning.LEARNED_MODELS)
    for fit_ages, val_ages in seen.values():
        assert fit_ages == set(fit.tolist()) and val_ages == set(val.tolist())
        assert not (fit_ages | val_ages) & set(test.tolist())
    assert set(res.mae) == set(evaluation.MODELS)
    assert res.mae["gru"] == pytest.approx(res.mae["last_value"])  # the spy's forecaster was scored on test
