"""carbonlab/footprint/advice.py: the lowest-intensity window of a forecast, and the sentence.

Expected windows are worked out here by brute force over the forecast, independently of the code.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest

from carbonlab.config import Settings
from carbonlab.footprint import advice_for, providers
from carbonlab.footprint.advice import Advice, advice_from_forecast, best_window, mean_over
from carbonlab.footprint.providers.records import Period, parse_time
from carbonlab.measurement import Component, Measurement
from tests.test_providers import (
    UK,
    WT,
    ApiServer,
    Clock,
    Reply,
    provider,
    sample,
    uk_server,
    uk_settings,
    wt_server,
    wt_settings,
)

H = 3600.0
HALF = 1800.0
T0 = parse_time("2020-05-21T21:00Z")  # a Thursday


# No CARBONLAB_* variables and no provider instances between tests (autouse, from the providers' tests).
from tests.test_providers import _isolated  # noqa: E402, F401


@pytest.fixture
def api():
    s = ApiServer().start()
    try:
        yield s
    finally:
        s.stop()


def real_forecast():
    rows = json.loads(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))["data"]
    return [
        Period(parse_time(r["from"]), parse_time(r["to"]), float(r["intensity"]["forecast"]))
        for r in rows
    ]


def brute_force(periods, duration, now, horizon, step):
    """Every start on a ``step`` grid from ``now``: the mean of the values under the window."""
    best = None
    s = now
    while s + duration <= min(now + horizon, periods[-1].end):
        vals = [p.gco2e_per_kwh for p in periods if p.start >= s and p.end <= s + duration]
        if len(vals) * (periods[0].end - periods[0].start) == duration:
            m = sum(vals) / len(vals)
            if best is None or m < best[2]:
                best = (s, s + duration, m)
        s += step
    return best


# --- window arithmetic ---------------------------------------------------------------------------


def test_half_hour_periods_real_gb_forecast():
    fc = real_forecast()
    assert all(p.end - p.start == HALF for p in fc)
    for duration in (HALF, H, 3 * H):
        got = best_window(fc, duration, now=T0, horizon_s=24 * H)
        assert got == brute_force(fc, duration, T0, 24 * H, HALF)
    assert best_window(fc, H, now=T0, horizon_s=24 * H) == (
        parse_time("2020-05-22T14:00Z"),
        parse_time("2020-05-22T15:00Z"),
        60.0,
    )


def test_now_between_period_edges_weights_partial_periods():
    fc = [Period(0, HALF, 100.0), Period(HALF, H, 200.0), Period(H, 2 * H, 400.0)]
    assert mean_over(fc, 900, 2700) == 150.0
    assert mean_over(fc, 0, 2 * H) == (100 * HALF + 200 * HALF + 400 * H) / (2 * H)
    # from 00:15 a 45-minute window: starting now (00:15-01:00) = 100×15 + 200×30 over 45 min
    s, e, m = best_window(fc, 2700, now=900, horizon_s=4 * H)
    assert (s, e) == (900, 3600) and m == pytest.approx((100 * 900 + 200 * 1800) / 2700)


def test_window_ends_on_a_period_edge_when_that_is_lower():
    # 50 min windows over 30 min steps: the best one ends where the cheap period ends
    fc = [Period(0, HALF, 300.0), Period(HALF, H, 10.0), Period(H, 3 * HALF, 300.0)]
    s, e, m = best_window(fc, 3000, now=0.0, horizon_s=10 * H)
    assert e - s == 3000 and m == pytest.approx((1800 * 10 + 1200 * 300) / 3000)


def test_windows_at_the_forecast_edge_are_not_extrapolated():
    fc = [Period(0, H, 300.0), Period(H, 2 * H, 300.0), Period(2 * H, 3 * H, 100.0)]
    # a 2 h window from 02:00 would run past the forecast: not a candidate
    assert best_window(fc, 2 * H, now=0.0, horizon_s=10 * H) == (H, 3 * H, 200.0)
    # ending exactly at the forecast's end is fine
    assert best_window(fc, H, now=0.0, horizon_s=10 * H) == (2 * H, 3 * H, 100.0)
    # longer than the forecast: nothing
    assert best_window(fc, 4 * H, now=0.0, horizon_s=10 * H) is None
    # the horizon cuts too
    assert best_window(fc, H, now=0.0, horizon_s=2 * H) == (0.0, H, 300.0)
    # now past the forecast: nothing
    assert best_window(fc, H, now=5 * H, horizon_s=10 * H) is None


def test_a_gap_in_the_forecast_is_never_filled():
    fc = [Period(0, H, 300.0), Period(2 * H, 3 * H, 50.0)]
    assert best_window(fc, H, now=0.0, horizon_s=10 * H) == (2 * H, 3 * H, 50.0)
    assert best_window(fc, 2 * H, now=0.0, horizon_s=10 * H) is None
    assert mean_over(fc, 0.0, 2 * H) is None


def test_ties_take_the_earliest_and_overlaps_are_clipped():
    fc = [Period(0, H, 100.0), Period(H, 2 * H, 100.0)]
    assert best_window(fc, H, now=0.0, horizon_s=5 * H) == (0.0, H, 100.0)
    overlapping = [Period(0, 2 * H, 100.0), Period(H, 3 * H, 300.0)]  # the second clipped to 2 h
    assert mean_over(overlapping, 0, 3 * H) == pytest.approx((100 * 2 + 300) / 3)


def test_time_zones_parse_and_display():
    z = [Period(parse_time("2020-05-22T02:00Z"), parse_time("2020-05-22T03:00Z"), 80.0)]
    plus1 = [
        Period(parse_time("2020-05-22T03:00+01:00"), parse_time("2020-05-22T04:00+01:00"), 80.0)
    ]
    assert z == plus1
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2020-05-22T02:00")
    fc = [Period(T0, parse_time("2020-05-22T02:00Z"), 200.0), *z]
    kw = dict(now=T0, window_s=H, horizon_s=24 * H, current_gco2e_per_kwh=200.0, source="S")
    a = advice_from_forecast(fc, **kw)
    assert "between Fri 02:00 and 03:00 UTC" in a.sentence
    cet = timezone(timedelta(hours=1), "CET")
    assert "between Fri 03:00 and 04:00 CET" in advice_from_forecast(fc, tz=cet, **kw).sentence
    try:
        from zoneinfo import ZoneInfo

        london = ZoneInfo("Europe/London")
    except Exception:  # no time zone database here
        return
    # 21:00 UTC on 21 May is 22:00 BST; 02:00 UTC is 03:00 BST the next day
    assert "between Fri 03:00 and 04:00 BST" in advice_from_forecast(fc, tz=london, **kw).sentence


def test_window_on_today_has_no_weekday():
    fc = [Period(T0, T0 + H, 200.0), Period(T0 + H, T0 + 2 * H, 100.0)]
    a = advice_from_forecast(
        fc, now=T0, window_s=H, horizon_s=24 * H, current_gco2e_per_kwh=200.0, source="S"
    )
    assert "between 22:00 and 23:00 UTC" in a.sentence
    # across midnight: the end gets its weekday
    fc = [Period(T0, T0 + 2 * H, 200.0), Period(T0 + 2 * H, T0 + 4 * H, 100.0)]
    a = advice_from_forecast(
        fc, now=T0, window_s=2 * H, horizon_s=24 * H, current_gco2e_per_kwh=200.0, source="S"
    )
    assert "between 23:00 and Fri 01:00 UTC" in a.sentence


def test_sentence_saving_and_grams():
    fc = [Period(T0, T0 + H, 200.0), Period(T0 + H, T0 + 2 * H, 118.0)]
    a = advice_from_forecast(
        fc,
        now=T0,
        window_s=H,
        horizon_s=24 * H,
        current_gco2e_per_kwh=210.0,
        energy_kwh=0.5,
        pue=1.2,
        source="NESO Carbon Intensity API",
        zone="GB",
        subject="this notebook's last hour of work",
    )
    assert isinstance(a, Advice)
    assert a.baseline == "forecast from now" and a.now_gco2e_per_kwh == 200.0  # not the reading
    assert a.saving_pct == 41.0
    assert a.co2e_now_g == pytest.approx(0.5 * 1.2 * 200) and a.saved_g == pytest.approx(
        0.5 * 1.2 * 82
    )
    assert a.sentence == (
        "this notebook's last hour of work would emit 41 % less between 22:00 and 23:00 UTC "
        "(118 instead of 200 gCO2e/kWh, 49.2 g less; NESO Carbon Intensity API forecast for GB)"
    )
    assert a.to_dict()["start_iso"] == "2020-05-21T22:00:00Z"


def test_when_now_is_best_it_says_so_and_invents_no_saving():
    fc = [Period(T0, T0 + H, 100.0), Period(T0 + H, T0 + 2 * H, 100.5)]
    a = advice_from_forecast(
        fc, now=T0, window_s=H, horizon_s=24 * H, current_gco2e_per_kwh=100.0, source="S"
    )
    assert a.saving_pct == 0.0 and a.start == T0
    assert a.sentence == (
        "now is the lowest-intensity time for this work in the next 24 h (100 gCO2e/kWh; S forecast)"
    )


def test_baseline_falls_back_to_the_current_reading_when_the_forecast_starts_later():
    fc = [Period(T0 + H, T0 + 2 * H, 100.0)]
    a = advice_from_forecast(
        fc, now=T0, window_s=H, horizon_s=24 * H, current_gco2e_per_kwh=200.0, source="S"
    )
    assert a.baseline == "current reading" and a.saving_pct == 50.0


# --- advice_for, with a provider ----------------------------------------------------------------


def test_no_forecast_no_advice(api, tmp_path):
    assert advice_for(3.6e6, Settings(zone="FR")) is None  # static
    api.routes["/intensity"] = Reply(sample(UK / "intensity.json"))  # the forecast URL is a 404
    s = uk_settings(api, tmp_path)
    provider(s).refresh()
    assert providers.snapshot(s)[0].forecast == ()
    assert advice_for(3.6e6, s) is None
    providers.reset()
    assert advice_for(3.6e6, uk_settings(api, tmp_path / "empty")) is None  # nothing fetched yet


def test_advice_for_from_the_gb_forecast(api, tmp_path):
    uk_server(api)
    s = uk_settings(api, tmp_path)
    provider(s, Clock(T0)).refresh()
    a = advice_for(3.6e6, s, subject="this notebook's last hour of work")  # 1 kWh per hour
    # brute force: 14:00-15:00 at 60; now (21:00-22:00) (177 + 161) / 2 = 169
    assert (a.start_iso, a.end_iso) == ("2020-05-22T14:00:00Z", "2020-05-22T15:00:00Z")
    assert a.now_gco2e_per_kwh == 169.0 and a.window_gco2e_per_kwh == 60.0
    assert a.saving_pct == round((169 - 60) / 169 * 100, 1)
    assert a.sentence == (
        "this notebook's last hour of work would emit 64 % less between Fri 14:00 and 15:00 UTC "
        "(60 instead of 169 gCO2e/kWh, 109 g less; NESO Carbon Intensity API forecast for GB)"
    )
    assert a.provider == "uk-carbon-intensity:GB" and a.signal == "average"
    # a shorter horizon: the best window within 6 h
    b = advice_for(3.6e6, s, horizon_h=6.0)
    assert (b.start_iso, b.end_iso) == ("2020-05-22T02:00:00Z", "2020-05-22T03:00:00Z")
    # the real capture seen a day later: no window ahead, no advice
    assert advice_for(3.6e6, s, now=T0 + 2 * 86400) is None


def test_advice_for_measurements_uses_their_energy_and_duration(api, tmp_path):
    uk_server(api)
    s = uk_settings(api, tmp_path)
    provider(s, Clock(T0)).refresh()
    ms = [
        Measurement("c1", "t", 1200.0, [Component("cpu", "p", 1.8e6, "rapl", "package")]),
        Measurement("c2", "t", 600.0, [Component("gpu", "g", 1.8e6, "nvml-power", "device")]),
    ]
    a = advice_for(ms, s)
    assert a.window_h == 0.5 and a.energy_kwh == 1.0  # 30 min of work, 1 kWh
    assert (a.start_iso, a.window_gco2e_per_kwh) == ("2020-05-22T14:00:00Z", 60.0)
    assert advice_for(ms[0], s).window_h == pytest.approx(1200 / 3600)
    assert advice_for(None, s, window_h=2).energy_kwh is None


def test_marginal_advice_is_labelled(api, tmp_path):
    fc = {
        "data": [
            {"point_time": "2024-06-18T18:45:00+00:00", "value": 1000.0},
            {"point_time": "2024-06-18T18:50:00+00:00", "value": 1000.0},
            {"point_time": "2024-06-18T18:55:00+00:00", "value": 500.0},
        ],
        "meta": json.loads(sample(WT / "forecast_shape.json"))["meta"],
    }
    wt_server(api, Reply(fc))
    now = parse_time("2024-06-18T18:45:00Z")
    s = wt_settings(api, tmp_path)
    provider(s, Clock(now)).refresh()
    a = advice_for(None, s, window_h=5 / 60, horizon_h=1)
    assert a.signal == "marginal" and a.saving_pct == 50.0
    assert a.sentence.startswith(
        "this work would cause 50 % less marginal emissions between 18:55 and 19:00 UTC "
        "(227 instead of 454 gCO2e/kWh marginal; WattTime MOER forecast for CAISO_NORTH)"
    )


def test_bad_work_is_refused_and_empty_forecasts_give_nothing():
    from carbonlab.footprint.advice import _work

    assert (
        advice_from_forecast([], now=0, window_s=H, horizon_s=H, current_gco2e_per_kwh=1.0) is None
    )
    with pytest.raises(ValueError, match="non-negative"):
        _work(-1.0)
    with pytest.raises(TypeError):
        _work(True)


def test_a_history_row_keeps_the_forecasts_best_window_for_the_reports_counterfactual(
    api, tmp_path
):
    # The notebook's history row of a run measured under a live zone gets the advice on the
    # writer thread (RunRecord.annotate, set by the extension), and `carbonlab report` turns it
    # into the lowest-intensity-window counterfactual.
    from carbonlab.jupyter.extension import _record_advice
    from carbonlab.report import build
    from carbonlab.report.inputs import load_history
    from carbonlab.store import RunRecord, Store

    uk_server(api)
    s = uk_settings(api, tmp_path)
    provider(s, Clock(T0)).refresh()
    m = Measurement(
        "train", "2020-05-21T20:00:00Z", H, [Component("cpu", "p", 3.6e6, "rapl", "package")]
    )
    m.pue = 1.0
    path = tmp_path / "history.sqlite"
    store = Store(path)
    store.write(
        [
            RunRecord.new(
                m, notebook="nb.ipynb", cell_id="c1", annotate=lambda d: _record_advice(d, s)
            )
        ]
    )
    store.close()
    runs, _ = load_history(str(path), None)
    assert runs[0].measurement.extra["advice"]["window_gco2e_per_kwh"] == 60.0
    (cf,) = build(runs).counterfactuals
    assert "lowest-intensity window of the forecast for GB, 2020-05-22T14:00:00Z" in cf.what
    assert cf.co2e_g == pytest.approx(60.0)  # 1 kWh at 60 g/kWh, PUE 1


@pytest.mark.fault("providers")
def test_an_annotation_that_fails_never_costs_the_history_row(tmp_path):
    from carbonlab.store import RunRecord, Store, read_rows

    def broken(d):
        raise RuntimeError("provider down")

    m = Measurement(
        "c", "2026-12-06T10:00:00Z", 1.0, [Component("cpu", "p", 5.0, "rapl", "package")]
    )
    store = Store(tmp_path / "h.sqlite")
    store.write([RunRecord.new(m, notebook="nb.ipynb", cell_id="c1", annotate=broken)])
    store.close()
    (row,) = read_rows(tmp_path / "h.sqlite", None)
    assert json.loads(row["measurement"])["energy_j"] == 5.0


@pytest.mark.fault("history")
def test_reading_rows_not_written_yet_never_runs_the_annotation(tmp_path, monkeypatch):
    # history() in a cell merges this kernel's rows still waiting for the writer: building them
    # must not ask a provider for the forecast on the cell's thread.
    from carbonlab import store as store_mod
    from carbonlab.store import RunRecord, Store

    monkeypatch.setattr(store_mod, "WRITE_DELAY_S", 60.0)  # the row waits until close()
    calls = []
    m = Measurement(
        "c", "2026-12-06T10:00:00Z", 1.0, [Component("cpu", "p", 5.0, "rapl", "package")]
    )
    store = Store(tmp_path / "h.sqlite")
    store.append(RunRecord.new(m, notebook="nb.ipynb", cell_id="c1", annotate=calls.append))
    try:
        rows = store.pending_rows("nb.ipynb")
        assert calls == [] and json.loads(rows[0]["measurement"])["energy_j"] == 5.0
    finally:
        store.close()
    assert len(calls) == 1  # the writer thread annotated the row it wrote
