"""Prices turn throughput into samples per dollar, the number that compares machines."""

from __future__ import annotations


def samples_per_dollar(samples_per_sec: float, price_per_hour: float) -> float:
    """Samples processed for one unit of currency at the worker's hourly price."""
    if price_per_hour <= 0:
        raise ValueError("price_per_hour must be positive")
    return samples_per_sec * 3600.0 / price_per_hour
