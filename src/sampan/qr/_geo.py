"""Geohash cells and the distance bound the registry's impossible-travel flag uses."""

from __future__ import annotations

import math

__all__ = ["GEOHASH", "region_distance_km"]

GEOHASH = "0123456789bcdefghjkmnpqrstuvwxyz"
_EARTH_KM = 6371.0


def _cell(region: str) -> tuple[float, float, float, float]:
    """(lat, lon, half-height, half-width) in degrees of a geohash cell."""
    lat, lon = [-90.0, 90.0], [-180.0, 180.0]
    even = True
    for char in region:
        bits = GEOHASH.index(char)
        for shift in range(4, -1, -1):
            span = lon if even else lat
            mid = (span[0] + span[1]) / 2
            if bits >> shift & 1:
                span[0] = mid
            else:
                span[1] = mid
            even = not even
    return (lat[0] + lat[1]) / 2, (lon[0] + lon[1]) / 2, (lat[1] - lat[0]) / 2, (lon[1] - lon[0]) / 2


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def _radius_km(region: str) -> float:
    lat, lon, dlat, dlon = _cell(region)
    return max(_haversine(lat, lon, lat + sy * dlat, lon + sx * dlon) for sy in (-1, 1) for sx in (-1, 1))


def region_distance_km(a: str, b: str) -> float:
    """A lower bound on the distance between any point of cell `a` and any point of cell `b` (km)."""
    if a.startswith(b) or b.startswith(a):
        return 0.0
    lat1, lon1, _, _ = _cell(a)
    lat2, lon2, _, _ = _cell(b)
    return max(0.0, _haversine(lat1, lon1, lat2, lon2) - _radius_km(a) - _radius_km(b))
