"""The derived serving graphs: the fused AF + beat-class graph and the pair-folded quality gate give
their sources' probabilities and are ignored when they do not match their sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from streamdx_inference.ecg.features import BEAT_SAMPLES, CAUSAL_SCALARS, N_SCALARS, RR_CONTEXT, EcgFeatures
from streamdx_inference.ecg.labeler import (
    PAIRED_QUALITY_DIR,
    EcgLabeler,
    EcgModel,
    StreamLabelState,
    load_ecg_model,
    load_fused_af_beats,
    load_paired_quality,
)
from streamdx_inference.ecg.training.fit import export_onnx
from streamdx_inference.ecg.training.nets import BeatNet
from streamdx_inference.ecg.training.pair_fold import pair_fold_model_dir
from streamdx_inference.ecg.training.recipes import AF_RR_CHANNELS
from streamdx_inference.ecg.training.trunk_fusion import fuse_model_dirs
from streamdx_inference.settings import default_models_dir


def _features(n: int, seed: int) -> EcgFeatures:
    rng = np.random.default_rng(seed)
    return EcgFeatures(rng.standard_normal((n, 2, BEAT_SAMPLES)).astype(np.float32),
                       rng.standard_normal((n, 3, RR_CONTEXT)).astype(np.float32),
                       rng.standard_normal((n, N_SCALARS)).astype(np.float32))  # fmt: skip


def _save(models: Path, name: str, net: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    for m in net.modules():  # trained-looking batch-norm statistics (folded into the convolutions)
        if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None and m.running_var is not None:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    d = models / name
    export_onnx(net, _features(64, seed), d / "model.onnx")
    (d / "model.json").write_text(json.dumps({"version": f"{name}-{seed}", "threshold": 0.5, "window": "fixed"}))


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    _save(tmp_path, "ecg_quality", BeatNet(1, CAUSAL_SCALARS, use_rr=True, stem_stride=5), 1)
    torch.manual_seed(2)
    _save(tmp_path, "ecg_af", BeatNet(1, CAUSAL_SCALARS, rr_channels=AF_RR_CHANNELS), 2)
    torch.manual_seed(3)
    _save(tmp_path, "ecg_beats", BeatNet(5, tuple(range(N_SCALARS))), 3)
    return tmp_path


def test_the_fused_graph_gives_both_models_probabilities(models: Path) -> None:
    meta = fuse_model_dirs(models)
    assert meta["max_abs_prob_diff"] < 1e-5 and set(meta["derived_from"]) == {"ecg_af", "ecg_beats"}
    fused = load_fused_af_beats(models)
    assert fused is not None
    f = _features(1500, 9)  # other inputs than the check's, and more than one chunk
    pa, pb = fused.run(f)
    assert pa.shape == (1500,) and pb.shape == (1500, 5)
    np.testing.assert_allclose(pa, load_ecg_model(models, "ecg_af").run(f), atol=1e-5)
    np.testing.assert_allclose(pb, load_ecg_model(models, "ecg_beats").run(f), atol=1e-5)


def _assert_same_labels(lab: EcgLabeler, plain: EcgLabeler, n: int, seed: int) -> None:
    """Both labelers give one stream of ``n`` random beats the same labels and probabilities."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, BEAT_SAMPLES)).astype(np.float32)
    rr = rng.uniform(0.6, 1.0, n)
    q = np.tile(np.array([0, 0, 0.01, 0.1, 0.95], np.float32), (n, 1))
    _, a = lab.label(StreamLabelState(), w, rr, rr, q)
    _, b = plain.label(StreamLabelState(), w, rr, rr, q)
    assert [(x.quality, x.af, x.beat_class) for x in a] == [(x.quality, x.af, x.beat_class) for x in b]
    for field in ("quality_prob", "af_prob"):
        assert np.allclose([getattr(x, field) for x in a], [getattr(x, field) for x in b], atol=1e-5)


def test_the_labeler_uses_it_only_while_it_matches_its_sources(models: Path) -> None:
    fuse_model_dirs(models)
    lab = EcgLabeler.from_dir(models)
    assert lab.fused is not None
    _assert_same_labels(lab, EcgLabeler(lab.quality, lab.af, lab.beats), 40, 4)
    assert EcgLabeler.from_dir(models, int8=False).fused is not None
    # a retrained AF model makes the fused graph stale: it is ignored
    _save(models, "ecg_af", BeatNet(1, CAUSAL_SCALARS, rr_channels=AF_RR_CHANNELS), 7)
    assert load_fused_af_beats(models) is None and EcgLabeler.from_dir(models).fused is None


def test_networks_with_different_trunks_are_refused(models: Path) -> None:
    _save(models, "ecg_beats", BeatNet(5, tuple(range(N_SCALARS)), stem_stride=5), 3)
    with pytest.raises(ValueError, match="differ"):
        fuse_model_dirs(models)
    assert not (models / "ecg_af_beats").exists()


def test_the_shipped_fused_graph_matches_the_shipped_models() -> None:
    """Retraining ecg_af or ecg_beats without rebuilding ecg_af_beats would silently slow the service."""
    assert load_fused_af_beats(default_models_dir()) is not None


def test_a_network_trained_on_the_spot_runs_as_served(models: Path) -> None:
    """onnx_ecg_model: the export loaded like a shipped model (metadata kept, same probabilities as
    the network), usable by the labeler beside shipped models."""
    from streamdx_inference.ecg.training.fit import onnx_ecg_model, predict_net

    torch.manual_seed(4)
    net = BeatNet(1, CAUSAL_SCALARS, rr_channels=AF_RR_CHANNELS)
    f = _features(300, 11)
    m = onnx_ecg_model(net, f, "ecg_af", {"version": "spot", "threshold": 0.3, "window": "fixed"})
    assert (m.name, m.version, m.threshold, m.window) == ("ecg_af", "spot", 0.3, "fixed")
    np.testing.assert_allclose(m.run(f).reshape(-1), predict_net(net, f), atol=1e-5)
    lab = EcgLabeler(load_ecg_model(models, "ecg_quality"), m, load_ecg_model(models, "ecg_beats"))
    rng = np.random.default_rng(5)
    waves = rng.standard_normal((20, BEAT_SAMPLES)).astype(np.float32)
    q = np.tile(np.array([0, 0, 0.01, 0.0, 0.9], np.float32), (20, 1))
    _, labels = lab.label(StreamLabelState(), waves, np.full(20, 0.8), np.full(20, 0.8), q)
    assert len(labels) == 20 and all(0.0 <= lb.af_prob <= 1.0 for lb in labels)


def _is_paired(m: EcgModel) -> bool:
    """Both what the labeler records and what the session runs say so."""
    folded = "pair_folded" in m.session.get_modelmeta().graph_name
    assert folded == (m.derived == PAIRED_QUALITY_DIR)
    return folded


@pytest.mark.parametrize("n", [1, 2, 3, 64, 1501])
def test_the_pair_folded_quality_graph_gives_the_models_probabilities(models: Path, n: int) -> None:
    """Odd and even batches (an odd one gets a zero beat inside the graph), one beat alone, several chunks."""
    meta = pair_fold_model_dir(models)
    assert meta["max_abs_prob_diff"] < 1e-5 and set(meta["derived_from"]) == {"ecg_quality"}
    plain = load_ecg_model(models, "ecg_quality")
    paired = load_paired_quality(plain, models)
    assert _is_paired(paired) and not _is_paired(plain) and paired.meta == plain.meta
    f = _features(n, 20 + n)
    p = paired.run(f)
    assert p.shape == (n,)
    np.testing.assert_allclose(p, plain.run(f), atol=1e-5)


def test_the_labeler_uses_the_pair_folded_graph_only_while_it_matches(models: Path) -> None:
    pair_fold_model_dir(models)
    lab = EcgLabeler.from_dir(models)
    assert _is_paired(lab.quality)
    _assert_same_labels(lab, EcgLabeler(load_ecg_model(models, "ecg_quality"), lab.af, lab.beats), 41, 6)
    # a retrained quality model makes the folded graph stale: the model itself serves
    _save(models, "ecg_quality", BeatNet(1, CAUSAL_SCALARS, use_rr=True, stem_stride=5), 8)
    assert not _is_paired(EcgLabeler.from_dir(models).quality)


def test_a_network_too_wide_for_two_beats_per_block_is_refused(models: Path) -> None:
    _save(models, "ecg_quality", BeatNet(1, CAUSAL_SCALARS, use_rr=True, stem_stride=5, width=16), 1)
    with pytest.raises(ValueError, match="do not fit"):
        pair_fold_model_dir(models)
    assert not (models / PAIRED_QUALITY_DIR).exists()


def test_the_shipped_pair_folded_graph_matches_the_shipped_quality_model() -> None:
    """Retraining ecg_quality without rebuilding ecg_quality_paired would silently slow the service."""
    models = default_models_dir()
    assert _is_paired(load_paired_quality(load_ecg_model(models, "ecg_quality"), models))
