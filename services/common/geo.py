"""Distances on the Earth, shared by every service that compares positions (sessions matching a charger,
incentives' radius rule, merchants' 150 m exclusive rule and walking estimates)."""

from __future__ import annotations

import math

# Mean Earth radius, metres, as the first implementation used (its 499 m / 501 m answers stay the same); the
# spherical model is within 0.5 % of the ellipsoid, far inside GPS error.
EARTH_RADIUS_M = 6_371_000.0


def great_circle_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two points in degrees (haversine, spherical Earth)."""
    a = (
        math.sin(math.radians(lat2 - lat1) / 2) ** 2
        + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
