"""One rule for every dated exception the project accepts: Trivy ignore entries, the base-image
digest waiver, and a stage's plain-HTTP waiver. Each may reach at most MAX_DAYS ahead, so it is
reviewed every quarter; from WARN_DAYS before its date the scan warns; after it, it no longer
counts."""

from __future__ import annotations

import datetime as dt
from typing import Literal

MAX_DAYS = 90
WARN_DAYS = 30

State = Literal["expired", "too far", "soon", "valid"]


def latest(today: dt.date) -> dt.date:
    """The latest date an exception may carry when it is written or renewed on `today`."""
    return today + dt.timedelta(days=MAX_DAYS)


def state(expires: dt.date, today: dt.date) -> State:
    if expires < today:
        return "expired"
    if expires > latest(today):
        return "too far"
    if (expires - today).days <= WARN_DAYS:
        return "soon"
    return "valid"
