"""The pure anomaly model: robust baselines, the windows of a scan, the three signals' rules, and
the incident state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.anomaly.detection import Signal, Thresholds, judge
from domain.anomaly.incident import incident_id_for, transitions
from domain.anomaly.readings import Measures, ScopeReading, WindowReading
from domain.anomaly.statistics import Baseline, exceeds, mad, median
from domain.anomaly.windows import last_complete_hour, scan_windows

NOW = datetime(2026, 3, 10, 14, 20, tzinfo=UTC)
LIMITS = Thresholds()


def reading(hour: Measures, base: dict[str, list[float]], *, day: Measures | None = None,
            history: int | None = None, night: int | None = None,
            error_shares: tuple[float, ...] = ()) -> ScopeReading:
    baseline = {metric: Baseline.of(values) for metric, values in base.items()}
    return ScopeReading("user", "alice", "alice", WindowReading(hour, baseline),
                        WindowReading(day or Measures(), {}), Baseline.of(error_shares), history, night)


def test_the_median_of_an_even_count_lies_halfway_between_the_middle_values() -> None:
    assert median([4, 1, 3, 2]) == 2.5 and median([5, 1, 9]) == 5 and median([]) == 0.0
    assert mad([1, 1, 2, 2, 4, 6, 9]) == 1 and mad([]) == 0.0


def test_one_odd_week_moves_neither_the_median_nor_the_mad_much() -> None:
    assert Baseline.of([100, 102, 98, 5000]) == Baseline(101.0, 2.0)


def test_three_times_the_usual_is_abnormal_and_twice_is_not() -> None:
    usual = Baseline.of([100, 110, 90, 100])
    assert exceeds(300, usual, 3.0, 10)
    assert not exceeds(200, usual, 3.0, 10)


def test_steady_growth_of_twenty_percent_a_week_never_reaches_three_times_the_median() -> None:
    weeks = [100 * 1.2 ** k for k in range(12)]
    for now in range(4, 12):
        trailing = Baseline.of(weeks[now - 4:now])
        assert weeks[now] / trailing.median == pytest.approx(1.2 ** 2.5, rel=0.01)
        assert not exceeds(weeks[now], trailing, 3.0, 0)
        # the spread test alone would flag it: the MAD around a lagging median is small
        assert weeks[now] > trailing.median + 3.0 * trailing.mad


def test_the_floor_keeps_a_perfectly_regular_series_from_alarming_at_one_request_more() -> None:
    assert not exceeds(11, Baseline.of([10, 10, 10, 10]), 3.0, 0)  # not 3x
    assert not exceeds(31, Baseline.of([10, 10, 10, 10]), 3.0, 10)  # 3x, but within 3 floors
    assert exceeds(41, Baseline.of([10, 10, 10, 10]), 3.0, 10)


def test_the_last_complete_hour_is_the_one_before_the_current() -> None:
    assert last_complete_hour(NOW) == datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert last_complete_hour(datetime(2026, 3, 10, 14, tzinfo=UTC)) == datetime(2026, 3, 10, 13, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        last_complete_hour(datetime(2026, 3, 10, 14))


def test_windows_follow_the_local_hour_across_a_daylight_saving_change() -> None:
    windows = scan_windows(NOW, 2, "America/New_York")  # clocks went forward on 8 March
    assert windows.hours == (datetime(2026, 3, 10, 13, tzinfo=UTC), datetime(2026, 3, 3, 14, tzinfo=UTC),
                             datetime(2026, 2, 24, 14, tzinfo=UTC))
    assert windows.day_starts[0] == datetime(2026, 3, 9, 14, tzinfo=UTC)
    assert windows.history == (datetime(2026, 2, 24, 13, tzinfo=UTC), windows.hour)
    assert windows.local_hour() == 9
    assert {h.astimezone(ZoneInfo("America/New_York")).hour for h in windows.hours} == {9}


def test_a_quiet_user_never_alarms_whatever_its_baseline() -> None:
    few = Measures(requests=3, tokens=50_000, cost=900_000_000, finished=3, errors=3)
    assert judge(reading(few, {"cost": [0, 0, 0, 0], "tokens": [0] * 4, "requests": [0] * 4}, day=few,
                         history=0, night=0), scan_windows(NOW, 4, "UTC"), LIMITS) == []


def test_a_spike_names_its_window_metric_and_figures() -> None:
    hour = Measures(requests=90, tokens=90_000, cost=1_800_000_000, finished=90)
    (signal,) = judge(reading(hour, {"cost": [5e8] * 4, "tokens": [25_000] * 4, "requests": [25] * 4}),
                      scan_windows(NOW, 4, "UTC"), LIMITS)
    assert (signal.kind, signal.scope, signal.scope_id, signal.user_id) == ("spike", "user", "alice", "alice")
    assert signal.figures == {"window": "hour", "metric": "cost", "value": 1_800_000_000,
                              "baseline_median": 5e8, "baseline_mad": 0.0, "factor": 3.0, "weeks": 4,
                              "hour": "2026-03-10T13:00:00+00:00"}


def test_night_usage_is_judged_against_the_users_own_profile() -> None:
    at_night = scan_windows(datetime(2026, 3, 10, 4, 30, tzinfo=UTC), 4, "UTC")  # last hour 03:00
    hour = Measures(requests=30, tokens=30_000, cost=600_000_000, finished=30)
    base = {"cost": [3e8] * 4, "tokens": [30_000] * 4, "requests": [0] * 4}  # not a spike of spend
    assert [s.kind for s in judge(reading(hour, base, history=5000, night=10), at_night, LIMITS)] == ["night"]
    assert judge(reading(hour, base, history=5000, night=400), at_night, LIMITS) == []  # a night worker
    assert judge(reading(hour, base, history=5, night=0), at_night, LIMITS) == []  # no profile yet
    assert judge(reading(hour, base, history=5000, night=0), scan_windows(NOW, 4, "UTC"), LIMITS) == []


def test_an_error_share_is_judged_against_the_scopes_own_share() -> None:
    hour = Measures(requests=50, tokens=50_000, cost=50_000_000, finished=50, errors=13)
    base = {"cost": [5e7] * 4, "tokens": [50_000] * 4, "requests": [50] * 4}
    assert [s.kind for s in judge(reading(hour, base, error_shares=(0.04, 0.04, 0.05, 0.03)),
                                  scan_windows(NOW, 4, "UTC"), LIMITS)] == ["error_rate"]
    assert judge(reading(hour, base, error_shares=(0.25, 0.3, 0.2, 0.25)), scan_windows(NOW, 4, "UTC"),
                 LIMITS) == []
    few = Measures(requests=10, tokens=1, cost=1, finished=10, errors=9)
    assert judge(reading(few, base), scan_windows(NOW, 4, "UTC"), LIMITS) == []


def test_an_incident_starts_once_lasts_while_abnormal_and_ends_when_normal() -> None:
    spike = Signal("spike", "user", "alice", "alice", {})
    started = transitions([], [spike])
    assert started.detected == (spike,) and started.resolved == ()
    lasting = transitions([spike.key], [spike])
    assert lasting.detected == () and lasting.resolved == ()
    assert transitions([spike.key], []).resolved == (spike.key,)


def test_incident_ids_are_stable_per_signal_and_start_hour() -> None:
    hour = datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert incident_id_for("spike", "user", "a", hour) == incident_id_for("spike", "user", "a",
                                                                          hour + timedelta(minutes=7))
    assert incident_id_for("spike", "user", "a", hour) != incident_id_for("spike", "key", "a", hour)
    assert incident_id_for("spike", "user", "a", hour) != incident_id_for("spike", "user", "a",
                                                                          hour + timedelta(hours=1))


def test_thresholds_refuse_settings_that_could_never_or_always_alarm() -> None:
    with pytest.raises(ValueError, match="factor"):
        Thresholds(factor=1.0)
    with pytest.raises(ValueError, match="weeks"):
        Thresholds(weeks=0)
    with pytest.raises(ValueError, match="night"):
        Thresholds(night_hours=(24,))


def test_usage_without_an_id_is_not_a_scope_of_its_own() -> None:
    hour = Measures(requests=90, tokens=90_000, cost=1_800_000_000, finished=90)
    base = {"cost": [5e8] * 4, "tokens": [25_000] * 4, "requests": [25] * 4}
    anonymous = reading(hour, base)
    keyless = ScopeReading("key", "", "alice", anonymous.hour, anonymous.day)
    assert judge(keyless, scan_windows(NOW, 4, "UTC"), LIMITS) == []
