"""The ECG networks' training loss on hard and soft targets, the weight average and the beat
augmentation (pure, CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from streamdx_inference.ecg.features import BEAT_SAMPLES, N_SCALARS, RR_CONTEXT, EcgFeatures  # noqa: E402
from streamdx_inference.ecg.training.fit import _loss_fn, augment_beats, fit_net, predict_net  # noqa: E402
from streamdx_inference.ecg.training.nets import BeatNet  # noqa: E402

W = np.array([1.0, 50.0, 3.0])


def test_one_hot_soft_targets_give_the_class_weighted_loss() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 3, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    loss = _loss_fn(3, W)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(W, dtype=torch.float32))(z, y)
    assert float(loss(z, y)) == pytest.approx(float(ref), rel=1e-6)
    assert float(loss(z, torch.eye(3)[y])) == pytest.approx(float(ref), rel=1e-6)


def test_soft_targets_weigh_each_beat_by_its_most_probable_class() -> None:
    # every beat is class 0 with a teacher's 2 % on the rare class 1 (weight 50): weighting the
    # class-1 term by 50 would make that 2 % dominate; weighting the beat by class 0 does not
    z = torch.zeros(8, 3)
    z[:, 0] = 4.0
    t = torch.tensor([[0.97, 0.02, 0.01]]).repeat(8, 1)
    got = float(_loss_fn(3, W)(z, t))
    per_beat = float(-(t * torch.log_softmax(z, dim=1)).sum(dim=1).mean())
    assert got == pytest.approx(per_beat, rel=1e-6)
    naive = float(-(torch.tensor(W, dtype=torch.float32) * t * torch.log_softmax(z, dim=1)).sum(dim=1).mean())
    assert naive > 5 * got


def _toy(n: int, seed: int) -> tuple[EcgFeatures, np.ndarray]:
    """Two classes told apart by the sign of a bump at R (index 100)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    wave = rng.normal(0.0, 0.1, (n, 2, BEAT_SAMPLES)).astype(np.float32)
    wave[:, 0, 95:106] += np.where(y == 1, 1.0, -1.0)[:, None]
    return EcgFeatures(wave, np.zeros((n, 3, RR_CONTEXT), np.float32), np.zeros((n, N_SCALARS), np.float32)), y


@pytest.mark.parametrize("soft", [False, True])
def test_fit_with_weight_average_learns_hard_and_soft_targets(soft: bool) -> None:
    tr, y = _toy(512, 0)
    va, yv = _toy(256, 1)
    target = (0.5 * np.eye(2, dtype=np.float32)[y] + 0.25).astype(np.float32) if soft else y
    torch.manual_seed(0)
    net, hist = fit_net(BeatNet(2, ()), tr, target, va, yv, epochs=10, batch=64, progress=False, ema_decay=0.9)
    assert len(hist) == 10
    acc = float(np.mean(predict_net(net, va).argmax(1) == yv))
    assert acc > 0.95


def _fit(ema_decay: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    tr, y = _toy(512, 0)
    va, yv = _toy(256, 1)
    torch.manual_seed(0)
    net = BeatNet(2, ())
    start = {k: v.clone() for k, v in net.state_dict().items()}
    out, _ = fit_net(net, tr, y, va, yv, epochs=6, batch=64, progress=False, ema_decay=ema_decay)
    return start, out.state_dict()


def _moved(a: dict[str, Any], b: dict[str, Any]) -> float:
    return sum(float((a[k] - b[k]).norm()) for k in a if a[k].is_floating_point() and "running" not in k)


def test_the_weight_average_is_what_fit_returns() -> None:
    start, plain = _fit(None)
    _, copied = _fit(0.0)  # decay 0: the average is the current weights
    _, frozen = _fit(1.0)  # decay 1: the average keeps its first update (after the first step)
    assert all(torch.equal(copied[k], v) for k, v in plain.items())
    assert _moved(frozen, start) < 0.1 * _moved(plain, start)


def test_a_binary_network_learns_soft_targets_as_probabilities() -> None:
    """The AF model's distillation targets (the reference mixed with its teachers' probabilities) are
    fractions: trained on 0.25 / 0.75 the network's probabilities settle near them, not at 0 / 1."""
    tr, y = _toy(512, 0)
    va, yv = _toy(256, 1)
    out = {}
    for soft in (False, True):
        target = (0.25 + 0.5 * y).astype(np.float32) if soft else y
        torch.manual_seed(0)
        net, _ = fit_net(BeatNet(1, ()), tr, target, va, yv, epochs=10, batch=64, progress=False)
        p = predict_net(net, va)
        out[soft] = (float(p[yv == 1].mean()), float(p[yv == 0].mean()))
    assert out[False][0] > 0.95 and out[False][1] < 0.05
    assert 0.6 < out[True][0] < 0.9 and 0.1 < out[True][1] < 0.4


def test_distillation_trains_teachers_then_the_student_on_mixed_targets() -> None:
    """distil_net (shared by the AF and beat-class recipes) with a recording stand-in for ``fit``."""
    from streamdx_inference.ecg.training.recipes import DISTILL_HARD_WEIGHT, distil_net

    feats, _ = _toy(4, 0)
    calls: list[tuple[np.ndarray, int, str]] = []

    class _Const(torch.nn.Module):  # a "network" whose probability is its seed / 10 on every beat
        def __init__(self, seed: int, n_out: int) -> None:
            super().__init__()
            self.logit = torch.logit(torch.tensor(seed / 10.0)) if n_out == 1 else None
            self.n_out = n_out
            self.seed = seed

        def forward(self, wave: Any, rr: Any, scalars: Any) -> Any:
            n = wave.shape[0]
            if self.n_out == 1:
                return self.logit.expand(n, 1)
            z = torch.zeros(n, self.n_out)
            z[:, 0] = float(self.seed)
            return z

    for n_classes in (1, 3):
        calls.clear()

        def fit(target: Any, seed: int, desc: str, k: int = n_classes) -> Any:
            calls.append((np.asarray(target), seed, desc))
            return _Const(seed, k).eval(), [{"epoch": 1}]

        y = np.array([0, 1, 1, 0] if n_classes == 1 else [0, 2, 1, 0])
        net, hist, info = distil_net(fit, y, n_classes, feats, teachers=2, seed=5, desc="m")
        assert [c[1:] for c in calls] == [(6, "m teacher 1/2"), (7, "m teacher 2/2"), (5, "m")]
        assert info == {"teachers": 2, "teacher_seeds": [6, 7], "hard_label_weight": DISTILL_HARD_WEIGHT}
        assert np.array_equal(calls[0][0], y) and hist == [{"epoch": 1}] and net.seed == 5
        mean = predict_net(_Const(6, n_classes), feats) * 0.5 + predict_net(_Const(7, n_classes), feats) * 0.5
        hard = y if n_classes == 1 else np.eye(3)[y]
        np.testing.assert_allclose(calls[2][0], DISTILL_HARD_WEIGHT * hard + (1 - DISTILL_HARD_WEIGHT) * mean,
                                   atol=1e-6)  # fmt: skip
    calls.clear()
    distil_net(fit, np.array([0, 1, 2, 0]), 3, feats, teachers=0, seed=0, desc="m")
    assert len(calls) == 1 and calls[0][0].dtype == np.int64  # no teachers: the reference classes


def test_sign_inversion_flips_whole_beats_with_the_given_probability() -> None:
    w = torch.randn(400, 2, BEAT_SAMPLES, generator=torch.Generator().manual_seed(1))

    def plain(flip: float) -> Any:  # no gain, noise or shift: only the inversion is left
        return augment_beats(w, torch.Generator().manual_seed(2), scale=0.0, noise=0.0, shift=0, flip=flip)

    assert torch.equal(plain(0.0), w) and torch.equal(plain(1.0), -w)
    half = plain(0.5)
    inverted = torch.all(half == -w, dim=(1, 2))
    assert torch.all(inverted | torch.all(half == w, dim=(1, 2)))  # both channels of a beat together
    assert 150 < int(inverted.sum()) < 250
