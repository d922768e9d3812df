"""The anomaly scan's settings: the defaults are the documented thresholds, night hours may wrap
midnight, and values that could never or always alarm are refused at start."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from domain.anomaly.detection import Thresholds
from infra.anomaly_wiring import thresholds_of
from infra.config.env_settings import Settings


def settings(**values: object) -> Settings:
    return Settings(dev=True, admin_token="a" * 32, key_secret="k" * 40, **values)


def test_the_default_settings_are_the_documented_thresholds() -> None:
    assert thresholds_of(settings()) == Thresholds()
    assert settings().anomaly_scan_interval_s == 300


def test_night_hours_may_wrap_midnight_and_minimums_scale_to_the_day() -> None:
    limits = thresholds_of(settings(anomaly_night_start=22, anomaly_night_end=5, anomaly_min_requests=50,
                                    anomaly_min_spend_usd=Decimal("1.5"), anomaly_factor=4, anomaly_weeks=6))
    assert limits.night_hours == (22, 23, 0, 1, 2, 3, 4)
    assert (limits.hour_minimum.requests, limits.hour_minimum.spend) == (50, 1_500_000_000)
    assert (limits.day_minimum.requests, limits.day_minimum.spend) == (250, 15_000_000_000)
    assert (limits.factor, limits.weeks, limits.min_error_requests) == (4, 6, 50)


@pytest.mark.parametrize("values", [{"anomaly_factor": 1}, {"anomaly_weeks": 0}, {"anomaly_weeks": 53},
                                    {"anomaly_night_start": 24}, {"anomaly_min_requests": 0},
                                    {"anomaly_min_spend_usd": "-1"}, {"anomaly_scan_interval_s": -5}])
def test_settings_that_could_never_or_always_alarm_are_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        settings(**values)
