"""carbonlab/footprint/providers: the three live APIs replayed by a local server, every fault the
server can inject, the shared disk cache, and what a measured window records.

The server (stdlib http.server on 127.0.0.1, in a thread) serves the samples copied into
tests/fixtures/api-samples/ and stops at the end of each test (or by itself after 60 s). Providers get
a fake clock, so backoff and TTL are checked without sleeping; the client timeout is 0.2 s.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from carbonlab import config, footprint
from carbonlab.config import ConfigError, Settings
from carbonlab.footprint import intensity, providers
from carbonlab.footprint.providers import cache, electricitymaps, uk_carbon_intensity, watttime
from carbonlab.footprint.providers.http import Client, Fault, check_range, retry_after_s
from carbonlab.footprint.providers.records import parse_time
from carbonlab.measurement import Component, Measurement

SAMPLES = Path(__file__).parent / "fixtures" / "api-samples"
UK = SAMPLES / "uk_carbon_intensity"
EM = SAMPLES / "electricitymaps"
WT = SAMPLES / "watttime"
TOKEN = "em-test-token-5f2c9a"  # must never appear outside the request header
WT_USER, WT_PASS, WT_BEARER = "ada", "pw-7731-secret", "wt-bearer-0b41"
TIMEOUT_S = 0.2
T0 = parse_time("2020-05-21T21:00Z")  # "now" for the real GB forecast capture


def sample(path: Path) -> bytes:
    return path.read_bytes()


# --- the local API server -------------------------------------------------------------------------


class Reply:
    def __init__(self, body=b"", status=200, headers=None, delay_s=0.0, truncate_to=None):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.status = status
        self.headers = headers or {}
        self.delay_s = delay_s
        self.truncate_to = truncate_to


class ApiServer:
    """Routes: exact paths, or prefixes ending in ``*``. Records every request (path, headers)."""

    def __init__(self):
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.first_seen = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                server.first_seen.set()
                r = server.route(path)
                if r is None:
                    r = Reply({"error": {"code": "404 Not Found", "message": path}}, 404)
                if r.delay_s:
                    server.release.wait(r.delay_s)  # bounded; released at teardown
                self.send_response(r.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.body)))
                for k, v in r.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(r.body if r.truncate_to is None else r.body[: r.truncate_to])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.netloc = f"127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.watchdog = threading.Timer(60.0, self.stop)
        self.watchdog.daemon = True

    def route(self, path):
        if path in self.routes:
            return self.routes[path]
        best = max(
            (k for k in self.routes if k.endswith("*") and path.startswith(k[:-1])),
            key=len,
            default=None,
        )
        return self.routes.get(best) if best else None

    def paths(self):
        return [p.split("?", 1)[0] for p, _ in self.requests]

    def start(self):
        self.thread.start()
        self.watchdog.start()
        return self

    def stop(self):
        self.release.set()
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ApiServer().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    for k in list(os.environ):
        if k.startswith("CARBONLAB_"):
            monkeypatch.delenv(k)
    providers.reset()
    yield
    providers.reset()


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def uk_server(server):
    server.routes["/intensity"] = Reply(sample(UK / "intensity.json"))
    server.routes["/intensity/*"] = Reply(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))
    return server


def uk_settings(server, tmp_path, arg="GB", **kw):
    kw.setdefault("intensity_timeout_s", TIMEOUT_S)
    return Settings(
        intensity=f"uk-carbon-intensity:{arg}",
        uk_ci_url=server.url,
        intensity_cache_dir=str(tmp_path / "cache"),
        **kw,
    )


def provider(settings, clock=None):
    p = providers.get(settings)
    p.clock = clock or Clock()
    return p


def window(joules=3600.0):
    return Measurement(
        "cell 1",
        "2020-05-21T21:00:00Z",
        2.0,
        [Component("cpu", "package-0", joules, "rapl", "package")],
    )


# --- GB Carbon Intensity -------------------------------------------------------------------------


def test_uk_national_current_and_forecast(server, tmp_path):
    uk_server(server)
    p = provider(uk_settings(server, tmp_path))
    p.refresh()
    snap = p.status().snapshot
    assert server.paths() == ["/intensity", "/intensity/2020-05-21T21:00Z/fw48h"]
    assert (snap.gco2e_per_kwh, snap.estimate) == (263.0, "actual")  # actual preferred to forecast
    assert (snap.valid_from, snap.valid_to) == (
        parse_time("2018-01-20T12:00Z"),
        parse_time("2018-01-20T12:30Z"),
    )
    assert snap.fetched_at == T0 and snap.zone == "GB" and snap.signal == "average"
    assert snap.extra == {"index": "moderate"}
    real = json.loads(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))["data"]
    assert len(snap.forecast) == len(real) == 48
    assert [p.gco2e_per_kwh for p in snap.forecast] == [d["intensity"]["forecast"] for d in real]
    assert all(b.start == a.end for a, b in zip(snap.forecast, snap.forecast[1:]))  # half hours
    assert all(p.end - p.start == 1800 for p in snap.forecast)


def test_uk_actual_null_uses_the_forecast(server, tmp_path):
    body = json.loads(sample(UK / "intensity.json"))
    body["data"][0]["intensity"]["actual"] = None
    server.routes["/intensity"] = Reply(body)
    p = provider(uk_settings(server, tmp_path))
    p.refresh()
    snap = p.status().snapshot
    assert (snap.gco2e_per_kwh, snap.estimate) == (266.0, "forecast")
    assert snap.forecast == () and "forecast unavailable: HTTP 404" in snap.forecast_note


def test_uk_region_by_name_uses_regional_endpoints(server, tmp_path):
    server.routes["/regional/regionid/3"] = Reply(sample(UK / "regional_regionid.json"))
    server.routes["/regional/intensity/*"] = Reply(sample(UK / "regional_intensity_fw48h.json"))
    p = provider(uk_settings(server, tmp_path, "north-west-england"))
    p.refresh()
    snap = p.status().snapshot
    assert server.paths() == [
        "/regional/regionid/3",
        "/regional/intensity/2020-05-21T21:00Z/fw48h/regionid/3",
    ]
    assert (snap.gco2e_per_kwh, snap.estimate, snap.zone) == (266.0, "forecast", "GB region 3")
    assert snap.name == "North West England (GB region 3)" and snap.spec == "uk-carbon-intensity:3"
    assert [p.gco2e_per_kwh for p in snap.forecast] == [266.0]


def test_uk_postcode(server, tmp_path):
    server.routes["/regional/postcode/RG10"] = Reply(sample(UK / "regional_postcode.json"))
    server.routes["/regional/intensity/*"] = Reply(sample(UK / "regional_regionid.json"))
    p = provider(uk_settings(server, tmp_path, "postcode:rg10"))
    p.refresh()
    snap = p.status().snapshot
    assert server.paths()[1] == "/regional/intensity/2020-05-21T21:00Z/fw48h/postcode/RG10"
    assert snap.zone == "GB postcode RG10" and snap.gco2e_per_kwh == 266.0
    assert snap.name == "North West England, postcode RG10 (GB)"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("region:99", "unknown region"),
        ("Atlantis", "unknown region"),
        ("postcode:12345", "not an outward postcode"),
    ],
)
def test_uk_bad_arguments_are_usage_errors(arg, message):
    with pytest.raises(ConfigError, match=message):
        footprint.validate(Settings(intensity=f"uk-carbon-intensity:{arg}"))


def test_window_charges_the_live_reading_with_its_provenance(server, tmp_path):
    uk_server(server)
    s = uk_settings(server, tmp_path)
    clock = Clock()
    p = provider(s, clock)
    p.refresh()
    clock.t = T0 + 180.0
    m = footprint.apply(window(3600.0), s)  # 1 Wh
    assert m.co2e_g == pytest.approx(0.001 * 263.0)
    i = m.intensity
    assert (i["gco2e_per_kwh"], i["source"], i["provider"]) == (
        263.0,
        "NESO Carbon Intensity API (live)",
        "uk-carbon-intensity:GB",
    )
    assert (i["at"], i["age_s"], i["estimate"], i["signal"]) == (
        "2020-05-21T21:00:00Z",
        180.0,
        "actual",
        "average",
    )
    assert (i["valid_from"], i["valid_to"]) == ("2018-01-20T12:00:00Z", "2018-01-20T12:30:00Z")
    assert "CC BY 4.0" in i["license"] and i["zone"] == "GB"
    assert m.notes[0] == (
        "grid 263 gCO2e/kWh (average): Great Britain (national) [GB], NESO Carbon Intensity API (live); "
        "actual for 2018-01-20 12:00-12:30 UTC; fetched 2020-05-21T21:00:00Z; "
        "generation-based, direct emissions incl. imports (NESO method)"
    )
    assert server.paths() == [
        "/intensity",
        "/intensity/2020-05-21T21:00Z/fw48h",
    ]  # no fetch in apply


@pytest.mark.fault("providers")
def test_window_never_waits_for_the_network(server, tmp_path):
    """The first window of a process: the fetch is slow, the window returns at once with the static
    figure and a note; once the background fetch lands, windows charge the live value."""
    server.routes["/intensity"] = Reply(sample(UK / "intensity.json"), delay_s=5.0)
    server.routes["/intensity/*"] = Reply(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))
    s = uk_settings(server, tmp_path, intensity_timeout_s=10.0)
    t = time.perf_counter()
    m = footprint.apply(window(), s)
    assert time.perf_counter() - t < 0.5
    assert m.intensity["source"] == "Ember 2024 (static)"
    assert m.intensity["fallback"]["reason"] == "no reading yet (the first fetch is under way)"
    assert m.notes[-1] == (
        "live intensity (uk-carbon-intensity:GB) unavailable: no reading yet (the first fetch is "
        "under way); used the static figure (Ember 2024 (static))"
    )
    assert server.first_seen.wait(5.0)  # the background thread asked
    server.release.set()
    assert providers.get(s).wait(5.0)
    m2 = footprint.apply(window(), s)
    assert m2.intensity["gco2e_per_kwh"] == 263.0 and m2.intensity["source"].startswith("NESO")
    assert not any("unavailable" in n for n in m2.notes)


def test_no_provider_module_is_imported_for_static_settings():
    code = (
        "import sys, carbonlab\n"
        "from carbonlab import footprint\n"
        "from carbonlab.config import Settings\n"
        "from carbonlab.measurement import Component, Measurement\n"
        "m = Measurement('x', 't', 1.0, [Component('cpu', 'p', 1.0, 'rapl', 'package')])\n"
        "footprint.apply(m, Settings(zone='FR'))\n"
        "print([k for k in sys.modules if 'providers' in k or k.startswith(('urllib.request', 'http.client'))])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# --- faults ---------------------------------------------------------------------------------------


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


FAULTS = {
    "timeout": (Reply(sample(UK / "intensity.json"), delay_s=3.0), "timed out after 0.2 s", "30 s"),
    "401": (Reply({"error": "Unauthorized"}, 401), "HTTP 401 Unauthorized", "60 min"),
    "429": (
        Reply({"error": "slow down"}, 429, {"Retry-After": "120"}),
        "HTTP 429 Too Many Requests (Retry-After 120 s)",
        "2 min",
    ),
    "500": (Reply(sample(UK / "error_500.json"), 500), "HTTP 500 Internal Server Error", "30 s"),
    "malformed": (
        Reply(b"{data: [}"),
        "malformed JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "30 s",
    ),
    "truncated": (
        Reply(sample(UK / "intensity.json"), truncate_to=40),
        f"truncated response (40 of {len(sample(UK / 'intensity.json'))} bytes)",
        "30 s",
    ),
    "negative": (
        Reply(sample(UK / "intensity.json").replace(b'"actual": 263', b'"actual": -5')),
        "value out of range: intensity.actual = -5 gCO2e/kWh (accepted 0-2000)",
        "30 s",
    ),
    "huge": (
        Reply(sample(UK / "intensity.json").replace(b'"actual": 263', b'"actual": 99999')),
        "value out of range: intensity.actual = 99999 gCO2e/kWh (accepted 0-2000)",
        "30 s",
    ),
    "not a number": (
        Reply(sample(UK / "intensity.json").replace(b'"actual": 263', b'"actual": "263"')),
        "unexpected response: intensity.actual is '263', not a number",
        "30 s",
    ),
    "wrong shape": (Reply({"result": []}), "unexpected response: no 'data' list", "30 s"),
}


@pytest.mark.fault("providers")
@pytest.mark.parametrize("fault", [*FAULTS, "refused"])
def test_each_fault_falls_back_to_the_static_figure_with_a_one_time_note(server, tmp_path, fault):
    if fault == "refused":
        s = uk_settings(server, tmp_path)
        s.uk_ci_url = f"http://127.0.0.1:{_closed_port()}"
        what, wait = "connection refused", "30 s"
        netloc = s.uk_ci_url.removeprefix("http://")
    else:
        reply, what, wait = FAULTS[fault]
        server.routes["/intensity"] = reply
        s = uk_settings(server, tmp_path)
        netloc = server.netloc
    p = provider(s)
    t = time.perf_counter()
    p.refresh()
    assert time.perf_counter() - t < 2.0  # bounded: never a hang
    m = footprint.apply(window(3600.0), s)
    static = intensity.lookup(
        "GB"
    )  # the provider stands for GB: its static figure, not the World's
    assert (
        m.intensity["gco2e_per_kwh"] == static.gco2e_per_kwh
        and m.intensity["source"] == static.source
    )
    assert m.co2e_g == pytest.approx(0.001 * static.gco2e_per_kwh)
    reason = f"{what} [{netloc}/intensity]"
    assert m.intensity["fallback"] == {"provider": "uk-carbon-intensity:GB", "reason": reason}
    note = (
        f"live intensity (uk-carbon-intensity:GB) unavailable: {reason}; used the static figure "
        f"({static.source}); next try in {wait}"
    )
    assert m.notes[-1] == note
    again = footprint.apply(window(), s)  # once: the next window says it in its record only
    assert note not in again.notes and again.intensity["fallback"]["reason"] == reason
    # re-applying the same measurement (carbonlab run does) keeps the note
    assert footprint.apply(m, s).notes.count(note) == 1


@pytest.mark.fault("providers")
def test_backoff_doubles_then_a_success_resets_it(server, tmp_path):
    server.routes["/intensity"] = Reply(sample(UK / "error_500.json"), 500)
    clock = Clock()
    p = provider(uk_settings(server, tmp_path), clock)
    delays = []
    for _ in range(4):
        e = p.refresh()
        delays.append(e.retry_at - clock.t)
        n = len(server.requests)
        clock.t += 1.0
        p.refresh()  # inside the backoff: no request
        assert len(server.requests) == n
        clock.t = e.retry_at
    assert delays == [30.0, 60.0, 120.0, 240.0]
    uk_server(server)
    e = p.refresh()
    assert e.failures == 0 and e.fault is None and e.snapshot.gco2e_per_kwh == 263.0


@pytest.mark.fault("providers")
def test_429_retry_after_is_honoured_even_when_longer_than_the_backoff(server, tmp_path):
    server.routes["/intensity"] = Reply({}, 429, {"Retry-After": "900"})
    clock = Clock()
    p = provider(uk_settings(server, tmp_path), clock)
    assert p.refresh().retry_at == T0 + 900.0
    clock.t = T0 + 899.0
    p.refresh()
    assert len(server.requests) == 1


def test_retry_after_http_date():
    assert (
        retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", parse_time("2015-10-21T07:27:00Z")) == 60.0
    )
    assert retry_after_s("soon", 0.0) is None
    assert retry_after_s("99999999", 0.0) == 86400.0


@pytest.mark.fault("providers")
def test_a_fault_after_a_good_reading_keeps_the_reading(server, tmp_path):
    uk_server(server)
    clock = Clock()
    s = uk_settings(server, tmp_path)
    p = provider(s, clock)
    p.refresh()
    server.routes["/intensity"] = Reply(b"", 503)
    clock.t += 1000.0  # past the TTL (900 s)
    p.refresh()
    m = footprint.apply(window(), s)
    assert m.intensity["gco2e_per_kwh"] == 263.0 and m.intensity["age_s"] == 1000.0
    assert (
        m.intensity["refresh_fault"] == f"HTTP 503 Service Unavailable [{server.netloc}/intensity]"
    )
    assert m.notes[-1] == (
        f"live intensity (uk-carbon-intensity:GB) refresh failed: HTTP 503 Service Unavailable "
        f"[{server.netloc}/intensity]; kept the reading fetched at 21:00 UTC (17 min old); next try in 30 s"
    )


@pytest.mark.fault("providers")
def test_a_reading_older_than_max_age_is_not_charged(server, tmp_path):
    uk_server(server)
    clock = Clock()
    s = uk_settings(server, tmp_path, intensity_max_age_s=3600.0)
    p = provider(s, clock)
    p.refresh()
    server.routes["/intensity"] = Reply(b"", 500)
    clock.t += 3700.0
    p.refresh()
    m = footprint.apply(window(), s)
    assert m.intensity["source"] == "Ember 2024 (static)"
    assert m.intensity["fallback"]["reason"].startswith(
        "the last reading is 62 min old (intensity_max_age_s = 3600 s); last fault: HTTP 500"
    )


def test_check_range():
    assert check_range(0, "x") == 0.0 and check_range(2000, "x") == 2000.0
    for bad in (-0.1, 2000.5, float("nan"), float("inf")):
        with pytest.raises(Fault) as e:
            check_range(bad, "x")
        assert e.value.kind == "range"
    with pytest.raises(Fault, match="not a number"):
        check_range(True, "x")


@pytest.mark.fault("providers")
def test_redirects_are_refused_so_headers_never_travel(server, tmp_path):
    server.routes["/carbon-intensity/latest"] = Reply(
        b"", 302, {"Location": "http://example.invalid/x"}
    )
    with pytest.raises(Fault, match=r"unexpected redirect \(HTTP 302\)"):
        Client(server.url, TIMEOUT_S, [TOKEN]).get_json(
            "/carbon-intensity/latest", headers={"auth-token": TOKEN}
        )


# --- the shared cache -----------------------------------------------------------------------------


def test_ttl_one_fetch_per_ttl(server, tmp_path):
    uk_server(server)
    clock = Clock()
    p = provider(uk_settings(server, tmp_path), clock)
    p.refresh()
    clock.t += 899.0
    p.refresh()
    assert len(server.requests) == 2
    clock.t += 2.0
    p.refresh()
    assert len(server.requests) == 4


def test_a_second_provider_instance_reads_the_cache_instead_of_fetching(server, tmp_path):
    uk_server(server)
    s = uk_settings(server, tmp_path)
    provider(s).refresh()
    providers.reset()  # as a new process would
    p2 = provider(s)
    assert p2.latest().gco2e_per_kwh == 263.0  # read from disk at once, no network
    p2.refresh()
    assert len(server.requests) == 2 and p2.fetches == 0


def test_threads_racing_make_one_fetch(server, tmp_path):
    """Two provider instances (as in two processes) refresh at once: the lock file makes the second
    wait for the first and read what it wrote."""
    server.routes["/intensity"] = Reply(sample(UK / "intensity.json"), delay_s=0.3)
    server.routes["/intensity/*"] = Reply(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))
    s = uk_settings(server, tmp_path, intensity_timeout_s=2.0)
    a = provider(s)
    providers.reset()
    b = provider(s)
    assert a is not b
    threads = [threading.Thread(target=x.refresh) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert server.paths() == ["/intensity", "/intensity/2020-05-21T21:00Z/fw48h"]
    assert a.fetches + b.fetches == 1
    assert a.status().snapshot.gco2e_per_kwh == b.status().snapshot.gco2e_per_kwh == 263.0


_CHILD = """
import json, sys
from carbonlab.config import Settings
from carbonlab.footprint import providers
s = Settings(intensity="uk-carbon-intensity:GB", uk_ci_url=sys.argv[1], intensity_cache_dir=sys.argv[2],
             intensity_timeout_s=5.0)
p = providers.get(s)
p.refresh()
print(json.dumps({"value": p.status().snapshot.gco2e_per_kwh, "fetches": p.fetches}))
"""


def test_two_processes_share_one_fetch(server, tmp_path):
    server.routes["/intensity"] = Reply(sample(UK / "intensity.json"), delay_s=0.5)
    server.routes["/intensity/*"] = Reply(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    args = [sys.executable, "-c", _CHILD, server.url, str(tmp_path / "cache")]
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [json.loads(o) for o, _ in outs]
    assert [r["value"] for r in results] == [263.0, 263.0]
    assert sorted(r["fetches"] for r in results) == [0, 1]
    assert len(server.requests) == 2  # one fetch (current + forecast) for both processes
    assert server.paths()[0] == "/intensity" and server.paths()[1].endswith("/fw48h")


@pytest.mark.fault("providers")
def test_corrupt_or_unwritable_cache_is_not_an_error(server, tmp_path):
    uk_server(server)
    s = uk_settings(server, tmp_path)
    p = provider(s)
    p.cache.directory.mkdir(parents=True)
    p.cache.path.write_text("{not json")
    p.refresh()
    assert p.status().snapshot.gco2e_per_kwh == 263.0
    blocker = tmp_path / "file"
    blocker.write_text("")
    s2 = uk_settings(server, tmp_path)
    s2.intensity_cache_dir = str(blocker / "sub")  # cannot be a directory
    providers.reset()
    p2 = provider(s2)
    p2.refresh()
    assert p2.status().snapshot.gco2e_per_kwh == 263.0  # held in memory


def test_cache_entry_round_trip_and_schema_check(tmp_path):
    c = cache.SharedCache(tmp_path, "x:y@http://h")
    assert c.read() is None
    c.write(cache.Entry(failures=2, retry_at=5.0, fault="f", fault_key="http:500"))
    e = c.read()
    assert (e.failures, e.retry_at, e.fault, e.fault_key) == (2, 5.0, "f", "http:500")
    c.path.write_text(json.dumps({"schema": "other"}))
    assert c.read() is None


# --- Electricity Maps ----------------------------------------------------------------------------


def em_server(server, forecast=True):
    server.routes["/v3/carbon-intensity/latest"] = Reply(
        sample(EM / "carbon_intensity_latest.json")
    )
    server.routes["/v3/carbon-intensity/history"] = Reply(
        sample(EM / "carbon_intensity_history.json")
    )
    server.routes["/v3/carbon-intensity/forecast"] = (
        Reply(sample(EM / "carbon_intensity_forecast_shape.json"))
        if forecast
        else Reply(sample(EM / "error_401.json"), 401)
    )
    return server


def em_settings(server, tmp_path, zone="US-CAR-DUK", token=TOKEN, **kw):
    return Settings(
        intensity=f"electricitymaps:{zone}",
        electricitymaps_url=server.url + "/v3",
        electricitymaps_token=None if token is None else config.Secret(token),
        intensity_cache_dir=str(tmp_path / "cache"),
        intensity_timeout_s=TIMEOUT_S,
        **kw,
    )


def test_electricitymaps_latest_history_forecast(server, tmp_path):
    em_server(server)
    p = provider(em_settings(server, tmp_path))
    p.refresh()
    snap = p.status().snapshot
    paths = [q for q, _ in server.requests]
    assert paths == [
        "/v3/carbon-intensity/latest?zone=US-CAR-DUK",
        "/v3/carbon-intensity/history?zone=US-CAR-DUK",
        "/v3/carbon-intensity/forecast?zone=US-CAR-DUK",
    ]
    assert all(h.get("auth-token") == TOKEN for _, h in server.requests)
    assert snap.gco2e_per_kwh == 216.0 and snap.estimate == "estimated (TIME_SLICER_AVERAGE)"
    assert snap.valid_from == parse_time("2024-03-06T19:00:00.000Z")
    assert snap.basis == "consumption-based (flow-traced), lifecycle"
    hist = json.loads(sample(EM / "carbon_intensity_history.json"))["history"]
    assert [h.gco2e_per_kwh for h in snap.history] == [h["carbonIntensity"] for h in hist]
    assert all(h.end - h.start == 3600 for h in snap.history)
    assert [f.gco2e_per_kwh for f in snap.forecast] == [304.0, 298.0, 287.0]
    assert snap.forecast[-1].end == parse_time("2024-03-06T23:00:00Z")  # last hour lasts an hour


def test_electricitymaps_plan_without_forecast_is_asked_again_after_a_day(server, tmp_path):
    em_server(server, forecast=False)
    clock = Clock()
    p = provider(em_settings(server, tmp_path), clock)
    p.refresh()
    snap = p.status().snapshot
    assert snap.gco2e_per_kwh == 216.0 and snap.forecast == ()
    assert snap.forecast_note.startswith("forecast not available with this token's plan: HTTP 401")
    clock.t += 1000.0
    p.refresh()
    assert [q.split("?")[0] for q, _ in server.requests].count("/v3/carbon-intensity/forecast") == 1
    clock.t += 86400.0
    p.refresh()
    assert [q.split("?")[0] for q, _ in server.requests].count("/v3/carbon-intensity/forecast") == 2


@pytest.mark.fault("providers")
def test_electricitymaps_token_is_never_shown_or_stored(server, tmp_path):
    server.routes["/v3/carbon-intensity/latest"] = Reply(
        {"message": f"Unauthorized token {TOKEN}"},
        401,  # a server echoing the token back
    )
    s = em_settings(server, tmp_path)
    p = provider(s)
    p.refresh()
    m = footprint.apply(window(), s)
    note = m.notes[-1]
    assert note == (
        f"live intensity (electricitymaps:US-CAR-DUK) unavailable: HTTP 401 Unauthorized "
        f"(check CARBONLAB_ELECTRICITYMAPS_TOKEN) [{server.netloc}/v3/carbon-intensity/latest]; "
        "used the static figure (Electricity Maps 2025 (static)); next try in 60 min"
    )
    blob = json.dumps(m.to_dict()) + repr(s) + str(s) + json.dumps(footprint.current_intensity(s))
    for f in Path(s.intensity_cache_dir).iterdir():
        blob += f.name + f.read_text()
    assert TOKEN not in blob and "Secret('***')" not in repr(s)  # not even the placeholder in repr
    assert repr(config.Secret(TOKEN)) == "Secret('***')"


def test_electricitymaps_token_from_the_environment(server, tmp_path, monkeypatch):
    em_server(server)
    monkeypatch.setenv("CARBONLAB_ELECTRICITYMAPS_TOKEN", TOKEN)
    monkeypatch.setenv("CARBONLAB_ELECTRICITYMAPS_URL", server.url + "/v3")
    monkeypatch.setenv("CARBONLAB_INTENSITY", "electricitymaps:US-CAR-DUK")
    s = config.resolve(cwd=tmp_path)
    assert s.source("electricitymaps_token") == "environment" and TOKEN not in repr(s)
    s.intensity_cache_dir = str(tmp_path / "cache")
    provider(s).refresh()
    assert server.requests[0][1]["auth-token"] == TOKEN


@pytest.mark.fault("providers")
def test_token_in_pyproject_is_refused_without_echoing_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.carbonlab]\nelectricitymaps_token = "{TOKEN}"\n'
    )
    with pytest.raises(ConfigError, match="credentials do not belong in pyproject.toml") as e:
        config.resolve(env={}, cwd=tmp_path)
    assert TOKEN not in str(e.value)


@pytest.mark.fault("providers")
def test_no_token_no_request_and_a_note(server, tmp_path):
    em_server(server)
    s = em_settings(server, tmp_path, zone="DE", token=None)
    provider(s).refresh()
    m = footprint.apply(window(), s)
    assert server.requests == []
    assert m.intensity["zone"] == "DE" and m.intensity["source"] == intensity.lookup("DE").source
    assert m.notes[-1] == (
        "live intensity (electricitymaps:DE) unavailable: no Electricity Maps token (set "
        f"CARBONLAB_ELECTRICITYMAPS_TOKEN); used the static figure ({intensity.lookup('DE').source})"
    )


def test_electricitymaps_zone_from_the_zone_setting_and_bad_zone():
    assert providers.parse_spec("electricitymaps", "fr")[2] == "electricitymaps:FR"
    with pytest.raises(ConfigError, match="needs a zone"):
        providers.parse_spec("electricitymaps:")
    with pytest.raises(ConfigError, match="zone key"):
        footprint.validate(Settings(intensity="electricitymaps:not a zone"))


# --- WattTime -----------------------------------------------------------------------------------


def wt_server(server, forecast=None):
    server.routes["/login"] = Reply({"token": WT_BEARER})
    server.routes["/v3/forecast"] = forecast or Reply(sample(WT / "forecast_shape.json"))
    return server


def wt_settings(server, tmp_path, **kw):
    return Settings(
        intensity="watttime:caiso_north",
        watttime_url=server.url,
        watttime_username=WT_USER,
        watttime_password=config.Secret(WT_PASS),
        intensity_cache_dir=str(tmp_path / "cache"),
        intensity_timeout_s=TIMEOUT_S,
        **kw,
    )


def test_watttime_login_then_forecast_converted_and_labelled_marginal(server, tmp_path):
    wt_server(server)
    clock = Clock(parse_time("2024-06-18T18:47:00Z"))
    p = provider(wt_settings(server, tmp_path), clock)
    p.refresh()
    (login, h1), (fc, h2) = server.requests
    assert (
        login == "/login"
        and h1["authorization"]
        == "Basic " + base64.b64encode(f"{WT_USER}:{WT_PASS}".encode()).decode()
    )
    assert fc == "/v3/forecast?region=CAISO_NORTH&signal_type=co2_moer&horizon_hours=24"
    assert h2["authorization"] == f"Bearer {WT_BEARER}"
    snap = p.status().snapshot
    # the point covering 18:47 is 18:45 (870 lb/MWh); × 0.45359237 g/kWh per lb/MWh
    assert snap.gco2e_per_kwh == pytest.approx(870.0 * 0.45359237)
    assert (snap.signal, snap.source, snap.zone) == (
        "marginal",
        "WattTime MOER (live, marginal)",
        "CAISO_NORTH",
    )
    assert snap.extra == {"units": "lbs_co2_per_mwh", "value_in_units": 870.0}
    assert [round(f.gco2e_per_kwh / 0.45359237, 6) for f in snap.forecast] == [870.0, 866.4, 861.2]
    assert all(f.end - f.start == 300 for f in snap.forecast)


def test_marginal_is_recorded_not_charged_by_default(server, tmp_path):
    wt_server(server)
    s = wt_settings(server, tmp_path, zone="US-CAL-CISO")
    provider(s, Clock(parse_time("2024-06-18T18:47:00Z"))).refresh()
    m = footprint.apply(window(3600.0), s)
    static = intensity.lookup("US-CAL-CISO")
    assert (
        m.intensity["gco2e_per_kwh"] == static.gco2e_per_kwh
        and m.intensity["source"] == static.source
    )
    assert m.co2e_g == pytest.approx(0.001 * static.gco2e_per_kwh)
    mg = m.intensity["marginal"]
    assert mg["signal"] == "marginal" and mg["gco2e_per_kwh"] == pytest.approx(394.625, abs=1e-3)
    assert mg["co2e_g"] == pytest.approx(0.001 * mg["gco2e_per_kwh"])
    assert mg["value_in_units"] == 870.0 and mg["units"] == "lbs_co2_per_mwh" and mg["age_s"] == 0.0
    note = (
        "marginal signal recorded, not charged: WattTime MOER (live, marginal) 395 gCO2e/kWh for "
        f"CAISO_NORTH; CO2e uses the average figure ({static.source}); set intensity_marginal = true "
        "to charge the marginal signal"
    )
    assert m.notes[-1] == note
    assert note not in footprint.apply(window(), s).notes


def test_marginal_charged_only_when_configured_and_labelled(server, tmp_path):
    wt_server(server)
    s = wt_settings(server, tmp_path, intensity_marginal=True)
    provider(s, Clock(parse_time("2024-06-18T18:47:00Z"))).refresh()
    m = footprint.apply(window(3600.0), s)
    assert m.intensity["signal"] == "marginal" and "marginal" in m.intensity["source"]
    assert m.co2e_g == pytest.approx(0.001 * 870.0 * 0.45359237)
    assert m.notes[0].startswith("grid 394.625 gCO2e/kWh (marginal): CAISO_NORTH (WattTime region)")
    assert m.notes[-1] == (
        "CO2e charged at a marginal signal (WattTime MOER (live, marginal)), not an average "
        "intensity (intensity_marginal = true)"
    )


@pytest.mark.fault("providers")
def test_watttime_scope_error_and_percentile_units(server, tmp_path):
    wt_server(server, Reply(sample(WT / "error_invalid_scope.json"), 403))
    s = wt_settings(server, tmp_path)
    provider(s).refresh()
    why = footprint.apply(window(), s).intensity["fallback"]["reason"]
    assert why == (
        "HTTP 403 Forbidden (this WattTime account has no access to region CAISO_NORTH; free "
        "accounts: CAISO_NORTH) (check CARBONLAB_WATTTIME_USERNAME and CARBONLAB_WATTTIME_PASSWORD) "
        f"[{server.netloc}/v3/forecast]"
    )
    providers.reset()
    server.routes["/v3/forecast"] = Reply(sample(WT / "signal_index.json"))
    s2 = wt_settings(server, tmp_path / "2")
    provider(s2).refresh()
    assert (
        footprint.apply(window(), s2)
        .intensity["fallback"]["reason"]
        .startswith("unexpected units 'percentile' (expected lbs_co2_per_mwh")
    )


def test_watttime_expired_token_logs_in_again_once(server, tmp_path):
    wt_server(server)
    replies = [Reply({"error": "expired"}, 401), Reply(sample(WT / "forecast_shape.json"))]
    orig = server.route
    server.route = lambda path: replies.pop(0) if path == "/v3/forecast" else orig(path)
    p = provider(wt_settings(server, tmp_path))
    p.refresh()
    assert server.paths() == ["/login", "/v3/forecast", "/login", "/v3/forecast"]
    assert p.status().snapshot is not None


@pytest.mark.fault("providers")
def test_watttime_without_credentials(server, tmp_path):
    wt_server(server)
    s = wt_settings(server, tmp_path)
    s.watttime_password = None
    provider(s).refresh()
    assert server.requests == []
    assert footprint.apply(window(), s).intensity["fallback"]["reason"] == (
        "no WattTime credentials (set CARBONLAB_WATTTIME_USERNAME and CARBONLAB_WATTTIME_PASSWORD)"
    )


@pytest.mark.fault("providers")
def test_watttime_password_and_bearer_never_leak(server, tmp_path):
    server.routes["/login"] = Reply({"token": WT_BEARER})
    server.routes["/v3/forecast"] = Reply({"error": f"bad bearer {WT_BEARER}"}, 500)
    s = wt_settings(server, tmp_path)
    provider(s).refresh()
    blob = json.dumps(footprint.apply(window(), s).to_dict()) + repr(s)
    blob += "".join(f.read_text() for f in Path(s.intensity_cache_dir).glob("*.json"))
    assert WT_PASS not in blob and WT_BEARER not in blob


# --- settings, validation, the public functions --------------------------------------------------


def test_unknown_provider_is_a_usage_error_but_current_still_falls_back():
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'"):
        footprint.validate(Settings(intensity="nosuch:GB"))
    i, why = intensity.current("GB", "nosuch:GB")
    assert i == intensity.lookup("GB") and "not available" in why


@pytest.mark.fault("providers")
def test_current_with_a_builtin_provider_never_blocks(server, tmp_path):
    server.routes["/intensity"] = Reply(sample(UK / "intensity.json"), delay_s=5.0)
    s = uk_settings(server, tmp_path, intensity_timeout_s=10.0)
    t = time.perf_counter()
    i, why = intensity.current(None, s.intensity, s)
    assert time.perf_counter() - t < 0.5
    assert i == intensity.lookup("GB") and "no reading yet" in why


def test_current_intensity_dict(server, tmp_path):
    uk_server(server)
    s = uk_settings(server, tmp_path)
    p = provider(s)
    p.refresh()
    d = footprint.current_intensity(s)
    assert d["live"] is True and d["provider"] == "uk-carbon-intensity:GB"
    assert (d["gco2e_per_kwh"], d["age_s"], d["index"], d["fault"]) == (
        263.0,
        0.0,
        "moderate",
        None,
    )
    assert d["forecast"] == {
        "periods": 48,
        "start": "2020-05-21T20:30:00Z",
        "end": "2020-05-22T20:30:00Z",
        "signal": "average",
        "source": "NESO Carbon Intensity API (live)",
    }
    json.dumps(d)
    static = footprint.current_intensity(Settings(zone="FR"))
    assert static["provider"] == "static" and static["live"] is False and static["forecast"] is None


def test_settings_validation():
    with pytest.raises(ConfigError, match="http:// or https://"):
        config.with_overrides(Settings(), uk_ci_url="ftp://x")
    s = config.with_overrides(Settings(), uk_ci_url="http://127.0.0.1:8080/", intensity_ttl_s="60")
    assert s.uk_ci_url == "http://127.0.0.1:8080" and s.intensity_ttl_s == 60.0
    with pytest.raises(ConfigError, match="intensity_timeout_s"):
        config.with_overrides(Settings(), intensity_timeout_s="0")


def test_uk_parse_arg_forms():
    assert uk_carbon_intensity.parse_arg("13").regionid == 13
    assert uk_carbon_intensity.parse_arg("region:13") == uk_carbon_intensity.parse_arg("London")
    assert uk_carbon_intensity.parse_arg("Scotland").regionid == 16
    assert uk_carbon_intensity.parse_arg("national").zone == "GB"
    assert electricitymaps.parse_arg("de") == "DE" and watttime.parse_arg("pjm_dc") == "PJM_DC"


# --- the command --------------------------------------------------------------------------------


def cli(args, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    e.update(
        CARBONLAB_INTENSITY_CACHE_DIR=str(tmp_path / "cache"),
        CARBONLAB_INTENSITY_TIMEOUT_S="0.5",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "carbonlab.cli", "intensity", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=e,
        timeout=60,
    )


def test_cli_intensity_live(server, tmp_path):
    uk_server(server)
    r = cli(["uk-carbon-intensity:GB"], tmp_path, CARBONLAB_UK_CI_URL=server.url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        lines[0]
        == "GB: 263 gCO2e/kWh (average), actual for 2018-01-20 12:00-12:30 UTC - Great Britain (national)"
    )
    assert lines[1].startswith(
        "  source: NESO Carbon Intensity API (live) [uk-carbon-intensity:GB], fetched "
    )
    assert "  index: moderate" in lines
    assert any(x.startswith("  forecast: 48 periods, 2020-05-21T20:30:00Z") for x in lines)
    # the captured forecast is from 2020: nothing ahead of now, so no window is invented
    assert lines[-1] == "  best window: none (no forecast covers a 1 h window in the next 24 h)"
    r = cli(
        ["--json"],
        tmp_path,
        CARBONLAB_UK_CI_URL=server.url,
        CARBONLAB_INTENSITY="uk-carbon-intensity:GB",
    )
    d = json.loads(r.stdout)
    assert d["live"] is True and d["gco2e_per_kwh"] == 263.0 and d["advice"] is None
    assert len(server.requests) == 2  # the second run read the shared cache


@pytest.mark.fault("providers")
def test_cli_intensity_fault_and_usage_errors(server, tmp_path):
    server.routes["/intensity"] = Reply(b"oops", 500)
    r = cli(["uk-carbon-intensity:GB"], tmp_path, CARBONLAB_UK_CI_URL=server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("GB: 216 gCO2e/kWh (average), 2024 yearly figure")
    assert (
        f"  live uk-carbon-intensity:GB answered with an error: HTTP 500 Internal Server Error "
        f"[{server.netloc}/intensity]; the static figure above is charged" in r.stdout
    )
    for args in (
        ["uk-carbon-intensity:region:99"],
        ["Atlantis"],
        ["--provider", "nosuch:x"],
        ["--window", "0"],
    ):
        r = cli(args, tmp_path)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith("carbonlab: error: ") and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.fault("providers")
def test_a_provider_bug_never_breaks_a_window(server, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(footprint, "_choose_fn", boom)
    s = uk_settings(server, tmp_path)
    m = footprint.apply(window(), s)
    assert m.intensity["source"] == "Ember 2024 (static)"
    assert m.notes[-1] == (
        "live intensity (uk-carbon-intensity:GB) unavailable: internal error (RuntimeError); "
        "used the static figure (Ember 2024 (static))"
    )
