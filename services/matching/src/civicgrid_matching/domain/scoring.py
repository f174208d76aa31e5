"""The ranking score of an eligible volunteer for one request (higher is better).

    score = w_dist * distance + w_fair * fairness + w_rate * rating + w_rel * reliability
            + w_cont * continuity

with every component in [0, 1]:

    distance    = (d_near + S) / (d + S)
                  d = metres from the volunteer's home to the request, d_near = distance of the
                  nearest eligible volunteer, S = ``distance_softening_m``. 1 for the nearest; the
                  relative form makes the score independent of how dense the district is.
    fairness    = 1 / (1 + recent_hours / H)
                  recent_hours = hours booked or given in the last ``recent_days`` days,
                  H = ``fairness_hours``: someone who gave H hours recently counts half.
    rating      = (sum of rating points + PRIOR * M) / (ratings + M)
                  points: satisfied 1, basically satisfied 0.7, unsatisfied 0; a Bayesian mean so
                  that one rating does not dominate (PRIOR 0.8, M 3).
    reliability = (1 + completed) / (1 + completed + 2 * no_shows + 0.5 * (declines + expiries))
    continuity  = 1 if the volunteer already serves this resident (same ``resident_ref``), else 0.

Default weights: distance 0.40, fairness 0.30, rating 0.10, reliability 0.10, continuity 0.10. A
recurring weekly service uses ``w_cont_recurring`` (1.0) instead, so the volunteer who already
serves that resident wins whenever they are eligible ("keep the same volunteer"). Ties break on
the volunteer id, so the same state always gives the same ranking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RATING_PRIOR = 0.8
RATING_PRIOR_WEIGHT = 3.0


@dataclass(frozen=True)
class Weights:
    distance: float = 0.40
    fairness: float = 0.30
    rating: float = 0.10
    reliability: float = 0.10
    continuity: float = 0.10
    continuity_recurring: float = 1.0
    distance_softening_m: float = 150.0
    fairness_hours: float = 4.0
    recent_days: int = 28

    def describe(self) -> dict:
        return asdict(self)


FORMULA = ("score = {distance}*distance + {fairness}*fairness + {rating}*rating + {reliability}*reliability "
           "+ {continuity}*continuity; distance=(d_near+{distance_softening_m})/(d+{distance_softening_m}), "
           "fairness=1/(1+recent_hours/{fairness_hours}) over {recent_days} days, rating=Bayesian mean of "
           "points (prior 0.8, weight 3), reliability=(1+completed)/(1+completed+2*no_shows+0.5*(declines+"
           "expiries)), continuity=1 if already serving this resident")


def formula(w: Weights, recurring: bool = False) -> str:
    d = w.describe()
    if recurring:
        d["continuity"] = w.continuity_recurring
    return FORMULA.format(**d)


def rating_score(points_sum: np.ndarray | float, count: np.ndarray | float) -> np.ndarray | float:
    return (points_sum + RATING_PRIOR * RATING_PRIOR_WEIGHT) / (count + RATING_PRIOR_WEIGHT)


def reliability_score(completed, no_shows, declines, expiries):
    return (1.0 + completed) / (1.0 + completed + 2.0 * no_shows + 0.5 * (declines + expiries))


def components(dist_m: np.ndarray, recent_hours: np.ndarray, rating: np.ndarray, reliability: np.ndarray,
               continuity: np.ndarray, w: Weights) -> dict[str, np.ndarray]:
    d_near = float(dist_m.min()) if len(dist_m) else 0.0
    return {
        "distance": (d_near + w.distance_softening_m) / (dist_m + w.distance_softening_m),
        "fairness": 1.0 / (1.0 + recent_hours / w.fairness_hours),
        "rating": rating,
        "reliability": reliability,
        "continuity": continuity,
    }


def total(c: dict[str, np.ndarray], w: Weights, recurring: bool = False) -> np.ndarray:
    return (w.distance * c["distance"] + w.fairness * c["fairness"] + w.rating * c["rating"]
            + w.reliability * c["reliability"]
            + (w.continuity_recurring if recurring else w.continuity) * c["continuity"])
