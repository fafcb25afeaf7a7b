"""Exact conditional sign test: the informed trace's false-positive bound.

Why a module of its own: the informed reader's only guarantee against *any*
unmarked mesh (including a leak of another delivery of the same asset, which
carries a mark of the same shape) is that the expected bin signs ``s_b`` are
keyed, i.i.d. fair coins, independent of the leak, of the original and of
every score computed from them. Conditioned on all of that, the signs are the
only randomness, so the null distribution of any statistic of ``(s, Z)`` is a
finite, exactly known law over ``2^n`` sign vectors.

Which statistic: given per-bin log-likelihood ratios ``L_b`` of the two signs
(any function of the data, never of ``s``), the Neyman-Pearson statistic of
"the leak carries these signs" against "the signs are independent of the leak"
is ``Lambda = sum_b log(2 sigmoid(s_b L_b))`` (likelihood of ``s`` over its
average over all sign vectors; ``E_H0 exp(Lambda) = 1``). Since
``log sigmoid(x) - log sigmoid(-x) = x``, ``Lambda = sum_b log(2 sigmoid(|L_b|))
- sum_{b: sign L_b != s_b} |L_b|``: it orders sign vectors exactly as the
``|L|``-weighted disagreement ``D = sum_b |L_b| [sign L_b != s_b]`` does (and as
the correlation ``sum s_b L_b = sum |L| - 2 D`` does). So the most powerful
conditional test's p-value is ``P(sum_b |L_b| B_b <= D_obs)`` for fair,
independent Bernoulli ``B_b``; the scale of ``L`` does not matter, only the
relative weights.

:func:`weighted_sign_tail` computes that probability, not a Chernoff bound of
it: weights are rounded *down* onto an integer grid (``sum w' B <= sum w B``, so
the event can only grow: the result is a rigorous upper bound) and the law of
the integer sum comes from an exact dynamic programme over the grid, truncated
at the observed value. The Chernoff bound it replaces (``min_lambda
exp(-lambda T) prod cosh(lambda w_b)``) is loose by a factor of roughly
``sqrt(2 pi) z`` (two to three nats at 1e-9), more when a few bins carry most of
the weight. A bin can never yield more than one bit (``P(B_b = 0) = 1/2``):
that is the ceiling of every test whose bound rests on the keyed signs alone.
"""

from __future__ import annotations

import math

import numpy as np

GRID = 1 << 16
"""Integer grid the weights are rounded down to (observed disagreement -> GRID units).

Rounding lowers the observed disagreement's threshold by at most ``n / GRID`` of
it (0.25 % for 160 bins); the programme costs ``n x GRID`` additions (~10 M)."""
_FLOAT_SLACK = 1e-9
"""Relative margin for float rounding in the sums of probabilities (adds only)."""

__all__ = ["GRID", "sign_capacity", "sign_reader_ceiling", "weighted_sign_tail"]


def weighted_sign_tail(weights: np.ndarray, agree: np.ndarray, grid: int = GRID) -> float:
    """Upper bound on ``P(sum_b w_b B_b <= sum_b w_b [not agree_b])``, ``B_b`` fair coins.

    ``weights`` are ``|L_b|`` (non-negative; computed without the expected signs),
    ``agree`` whether the observed sign of bin ``b`` equals its expected sign.
    Equals the exact p-value of the module's sign test up to the weight rounding,
    which only raises it. Zero-weight bins carry no evidence and are dropped.
    """
    w = np.abs(np.asarray(weights, np.float64))
    agree = np.asarray(agree, bool)
    keep = w > 0
    w, agree = w[keep], agree[keep]
    n = len(w)
    if n == 0:
        return 1.0
    total = float(w.sum())
    d_obs = float(w[~agree].sum())
    if d_obs <= 0.0:
        return 0.5**n  # exact: every B_b must be 0
    if d_obs >= total:
        return 1.0
    # Grid relative to the observed disagreement: a weight above it must agree
    # (exact), the rest lose at most one step each (n / grid of D_obs in all).
    step = d_obs / grid
    units = np.floor(np.minimum(w, 2.0 * d_obs) / step * (1.0 - 1e-12)).astype(np.int64)
    top = grid
    # Count the sign vectors (unscaled: at most 2^n, far inside float range) whose
    # rounded disagreement is j <= top. A bin rounded to 0 units doubles every
    # count and is divided out again, so it is skipped; a bin above top must agree.
    # Ascending order keeps the live prefix short for most of the bins.
    live = np.sort(units[(units > 0) & (units <= top)])
    counts = np.zeros(top + 1)
    counts[0] = 1.0
    reach = 0
    for k in live.tolist():
        reach = min(top, reach + k)
        counts[k : reach + 1] += counts[: reach + 1 - k]  # numpy buffers the overlap
    scale = -int(np.count_nonzero(units > 0))
    return min(1.0, math.ldexp(float(counts.sum()), scale) * (1.0 + _FLOAT_SLACK))


def sign_capacity(kappa: np.ndarray) -> float:
    """Mean information (nats) the signs of bins with LLR SNR ``kappa`` can give.

    For a bin whose sign LLR is ``N(kappa/2, kappa)`` (Gaussian noise, exact
    model) the sign test's statistic gains on average the binary-input channel's
    mutual information ``log 2 - E log(1 + exp(-L))``: about ``kappa / 8`` for a
    small ``kappa`` (the matched filter's ``z^2 / 2`` share), never more than
    ``log 2``. The sum over bins is what the most powerful keyed-sign test can
    expect; a p-value of ``p`` needs about ``-log p`` of it. Used by the benchmark
    to tell the keyed-sign ceiling from the matched-filter one. Gauss-Hermite
    quadrature (deterministic; Monte Carlo drowned the small-``kappa`` terms).
    """
    k = np.asarray(kappa, np.float64)
    k = k[k > 0]
    if not len(k):
        return 0.0
    x, wq = np.polynomial.hermite_e.hermegauss(80)
    wq = wq / wq.sum()
    llr = k[:, None] / 2.0 + np.sqrt(k)[:, None] * x[None, :]
    return float(len(k) * math.log(2.0) - (np.logaddexp(0.0, -llr) @ wq).sum())


def sign_reader_ceiling(
    kappa: np.ndarray, fpr: float, draws: int = 200, grid: int = 1 << 12, seed: int = 0
) -> float:
    """Identification rate of the most powerful keyed-sign test, Gaussian noise model.

    Draws per-bin sign LLRs ``L_b ~ N(kappa_b / 2, kappa_b)`` (the right signs,
    exact noise model) and returns the share whose exact sign-test p-value is
    ``<= fpr``: the keyed-sign counterpart of the matched filter's
    ``Phi(z - 6)``. A benchmark figure, not a bound.
    """
    k = np.asarray(kappa, np.float64)
    k = k[k > 0]
    if not len(k):
        return 0.0
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(draws):
        llr = k / 2.0 + np.sqrt(k) * rng.standard_normal(len(k))
        hits += weighted_sign_tail(llr, llr > 0, grid) <= fpr
    return hits / draws
