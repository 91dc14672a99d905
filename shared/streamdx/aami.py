"""AAMI EC57 beat classes of MIT-BIH beat annotation symbols (ANSI/AAMI EC57:2012, table 1).

Shared by the simulators (their ground truth), the training and evaluation code and the
inference service, so every one of them maps a symbol to a class the same way.
"""

from __future__ import annotations

__all__ = ["AAMI_CLASSES", "aami_class"]

# fmt: off
#: MIT-BIH beat symbol → AAMI class: N (normal, bundle-branch block, escape), S (supraventricular
#: ectopic), V (ventricular ectopic), F (fusion of V and N), Q (paced, fusion of paced, unclassifiable).
AAMI_CLASSES: dict[str, str] = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}
# fmt: on


def aami_class(symbol: str) -> str:
    """AAMI EC57 class (``N``, ``S``, ``V``, ``F``, ``Q``) of a MIT-BIH beat symbol.

    Raises
    ------
    KeyError
        If ``symbol`` is not a beat symbol.
    """
    return AAMI_CLASSES[symbol]
