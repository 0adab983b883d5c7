"""Small helpers of the sessions tests."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_000.0


def north_of(lat: float, lng: float, metres: float) -> tuple[float, float]:
    """The point `metres` north of (lat, lng), great-circle."""
    return lat + math.degrees(metres / EARTH_RADIUS_M), lng
