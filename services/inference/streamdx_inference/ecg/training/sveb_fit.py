"""Fitting the beat-class model's SVEB rule (:mod:`streamdx_inference.ecg.beat_class`) on training beats.

``streamdx train beats`` fits it on the DS1 records it trains the network on. For a model
trained before the rule existed, ``python -m streamdx_inference.ecg.training.sveb_fit
MODEL_DIR --mitdb DIR`` fits it on the DS1 records of ``--mitdb`` (in the model's beat
window) and records it in ``MODEL_DIR/model.json`` and the model card; the network is not
changed. Test records are never read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx_inference.ecg.beat_class import AAMI_CLASSES, SvebRule, premature_normal_qrs
from streamdx_inference.ecg.features import EcgFeatures

__all__ = ["LOG_RR_GRID", "QRS_DEV_GRID", "fit_sveb_rule", "main", "sveb_card_section"]

#: Candidate thresholds: RR_prev from 95 % down to 61 % of the running mean, QRS deviations
#: (log1p of the relative RMS difference from the template) from 0.2 to 0.8.
LOG_RR_GRID = tuple(round(-0.05 - 0.025 * i, 3) for i in range(19))
QRS_DEV_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
_S = AAMI_CLASSES.index("S")


def fit_sveb_rule(feats: EcgFeatures, y: npt.NDArray[np.int64]) -> tuple[SvebRule, dict[str, Any]]:
    """The grid thresholds maximising the F1 of "S" over the given labelled beats.

    Parameters
    ----------
    feats : EcgFeatures
        Features of training beats.
    y : ndarray of int
        Their AAMI class indices (into ``AAMI_CLASSES``).

    Returns
    -------
    rule : SvebRule
    info : dict
        ``f1``, ``se``, ``ppv`` of the rule on these beats and ``n_beats``, ``n_s``.

    Raises
    ------
    ValueError
        If there is no S beat to fit on.
    """
    is_s = np.asarray(y) == _S
    n_s = int(is_s.sum())
    if n_s == 0:
        raise ValueError("no S beat in the training beats: the SVEB rule cannot be fitted")
    best: tuple[float, SvebRule, dict[str, Any]] | None = None
    for lr in LOG_RR_GRID:  # fixed order: ties keep the first (least strict prematurity) candidate
        for dv in QRS_DEV_GRID:
            rule = SvebRule(lr, dv)
            flag = premature_normal_qrs(feats, rule)
            tp = int(np.sum(flag & is_s))
            f1 = 2.0 * tp / (int(flag.sum()) + n_s)
            if best is None or f1 > best[0]:
                best = (f1, rule, {"f1": f1, "se": tp / n_s, "ppv": tp / max(1, int(flag.sum()))})
    assert best is not None
    return best[1], {**best[2], "n_beats": int(np.asarray(y).size), "n_s": n_s}


def main(argv: Sequence[str] | None = None) -> int:
    """Fit the rule on the DS1 records of ``--mitdb`` and record it in an existing model folder."""
    from streamdx_inference.ecg.datasets import DEFAULT_CACHE, DS1, load_mitdb
    from streamdx_inference.ecg.training.data import beat_set
    from streamdx_inference.ecg.training.recipes import beat_labels

    p = argparse.ArgumentParser(prog="python -m streamdx_inference.ecg.training.sveb_fit",
                                description=main.__doc__)  # fmt: skip
    p.add_argument("model_dir", type=Path, help="beat-class model folder (model.json, MODEL_CARD.md)")
    p.add_argument("--mitdb", type=Path, required=True, help="MIT-BIH Arrhythmia folder (its DS1 records are used)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    a = p.parse_args(list(argv) if argv is not None else None)
    meta_path = a.model_dir / "model.json"
    meta = json.loads(meta_path.read_text())
    names = [n for n in DS1 if (a.mitdb / f"{n}.hea").exists()]
    if not names:
        print(f"error: no DS1 record in {a.mitdb}")
        return 2
    mit = load_mitdb(a.mitdb, names, meta.get("window", "fixed"), a.cache, progress=True)
    s = beat_set(mit)
    ok, y = beat_labels(s)
    rule, info = fit_sveb_rule(s.take(ok).features, y[ok])
    meta["sveb_rule"] = rule.to_dict()
    meta["sveb_rule_fit"] = {**info, "records": sorted(mit)}
    meta_path.write_text(json.dumps(meta, indent=2, default=float) + "\n")
    card = a.model_dir / "MODEL_CARD.md"
    if card.exists():
        how = f"python -m streamdx_inference.ecg.training.sveb_fit {a.model_dir} --mitdb {a.mitdb}"
        card.write_text(card.read_text().rstrip("\n") + sveb_card_section(rule.to_dict(), info, len(mit), how)
                        + " The network is unchanged: it was trained before the rule existed.\n")  # fmt: skip
    print(f"{a.model_dir}: sveb_rule {rule.to_dict()} (on {len(mit)} DS1 records: F1 {info['f1']:.3f}, "
          f"Se {info['se']:.3f}, +P {info['ppv']:.3f})")  # fmt: skip
    return 0


def sveb_card_section(rule: dict[str, float], info: dict[str, Any], n_records: int, command: str) -> str:
    """The model card's paragraph on the fitted rule."""
    return (
        f"\n\n## SVEB rule\n\nFor a beat the network calls N or S, the class is S when "
        f"`log(RR_prev / running mean RR)` < {rule['log_rr_max']} and the QRS deviation from the stream's template "
        f"< {rule['qrs_dev_max']}; otherwise N when that deviation is under the limit (a beat on time with a normal "
        f"QRS), else the network's most probable class other than S "
        f"(`streamdx_inference.ecg.beat_class`). Fitted on the labelled beats of the "
        f"{n_records} training (DS1) records, where the rule alone has S F1 {info['f1']:.3f} (Se {info['se']:.3f}, "
        f"+P {info['ppv']:.3f}), by `{command}`."
    )


if __name__ == "__main__":
    raise SystemExit(main())
