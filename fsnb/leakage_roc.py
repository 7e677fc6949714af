"""ROC curves of one feature, naive join against point-in-time join, from a report's rows.

Analysis only (numpy and polars, no charts): the leakage explorer draws what this returns.
The curve of each join is oriented like the summary's ROC AUC (``max(AUC, 1 - AUC)``:
the ranking power of the feature whichever way it points), so the area under each
curve is the number the summary prints.
"""

from __future__ import annotations

import numpy as np
import polars as pl

MAX_POINTS = 200  # points per curve sent to a chart, whatever the label count
JOINS = ("naive", "point-in-time")


def roc_frame(scores: dict[str, pl.Series], label: pl.Series) -> pl.DataFrame:
    """One ROC curve per join: columns ``join``, ``fpr``, ``tpr``, ``auc``, each curve from
    (0, 0) to (1, 1). Rows with a null score or a null label are left out of that join's
    curve; a join with no positive or no negative label row has no curve."""
    truth = label.cast(pl.Float64, strict=False).to_numpy()
    parts = []
    for join, score in scores.items():
        values = score.cast(pl.Float64, strict=False).to_numpy()
        keep = ~(np.isnan(values) | np.isnan(truth))
        curve = _curve(values[keep], truth[keep] == 1)
        if curve is not None:
            fpr, tpr, auc = curve
            parts.append(
                pl.DataFrame(
                    {"join": [join] * len(fpr), "fpr": fpr, "tpr": tpr, "auc": [auc] * len(fpr)},
                    schema={"join": pl.String, "fpr": pl.Float64, "tpr": pl.Float64, "auc": pl.Float64},
                )
            )
    if not parts:
        return pl.DataFrame(schema={"join": pl.String, "fpr": pl.Float64, "tpr": pl.Float64, "auc": pl.Float64})
    return pl.concat(parts)


def _curve(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    pos, neg = int(positive.sum()), int((~positive).sum())
    if pos == 0 or neg == 0:
        return None
    fpr, tpr = _points(score, positive, pos, neg)
    auc = _area(fpr, tpr)
    if auc < 0.5:  # the feature ranks the other way round: read it reversed
        fpr, tpr = _points(-score, positive, pos, neg)
        auc = _area(fpr, tpr)
    return (*_thin(fpr, tpr), auc)


def _area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _points(score: np.ndarray, positive: np.ndarray, pos: int, neg: int) -> tuple[np.ndarray, np.ndarray]:
    """True and false positive rates at every distinct threshold, highest score first
    (tied scores move together: one diagonal step, as the AUC counts ties one half)."""
    order = np.argsort(-score, kind="stable")
    ranked, hits = score[order], positive[order]
    last_of_tie = np.r_[np.nonzero(np.diff(ranked))[0], ranked.size - 1]
    tp = np.cumsum(hits)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos]


def _thin(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points, evenly spread along the curve, both ends kept."""
    if fpr.size <= MAX_POINTS:
        return fpr, tpr
    keep = np.unique(np.linspace(0, fpr.size - 1, MAX_POINTS).round().astype(int))
    return fpr[keep], tpr[keep]
