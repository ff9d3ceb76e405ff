"""Provider echoes and URL credentials (issue 13): a server that echoes the token in any string it
returns, or a ``user:pass@`` in a ``*_URL`` setting, must not put the secret in the Measurement JSON
(hence history rows and comm messages, which carry it), the notes, the disk cache, or the output of
``carbonlab intensity``. Scrubbed at the provider boundary; userinfo in a URL setting is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carbonlab import config, footprint
from carbonlab.config import ConfigError, Settings
from carbonlab.footprint import intensity
from carbonlab.footprint.providers.scrub import scrub_text
from carbonlab.footprint.providers.text import intensity_text
from tests.faults import assert_clean
from tests.test_providers import (
    EM,
    TIMEOUT_S,
    UK,
    WT,
    ApiServer,
    Reply,
    _isolated,  # noqa: F401  (autouse: no CARBONLAB_*, providers reset)
    provider,
    sample,
    window,
)

pytestmark = pytest.mark.fault("providers")


@pytest.fixture
def server():
    s = ApiServer().start()
    try:
        yield s
    finally:
        s.stop()


TOKEN = "em-tok-93c1f0a7"
WT_USER, WT_PASS, WT_BEARER = "grace", "wt-pw-51d8e2", "wt-bearer-77aa01c4"
SECRETS = (TOKEN, WT_PASS, WT_BEARER)
URL_PW = "urlpass-6b20f1"
QUERY_SECRET = "qsecret-a4e9b3"


def em_latest(**changes) -> Reply:
    d = json.loads(sample(EM / "carbon_intensity_latest.json"))
    d.update(changes)
    return Reply(d)


def wt_forecast(meta=None, value=None) -> Reply:
    d = json.loads(sample(WT / "forecast_shape.json"))
    d["meta"].update(meta or {})
    if value is not None:
        d["data"][0]["value"] = value
    return Reply(d)


def uk_intensity(**changes) -> Reply:
    d = json.loads(sample(UK / "intensity.json"))
    d["data"][0]["intensity"].update(changes)
    return Reply(d)


def em(server):
    server.routes["/v3/carbon-intensity/latest"] = em_latest()
    server.routes["/v3/carbon-intensity/history"] = Reply(
        sample(EM / "carbon_intensity_history.json")
    )
    server.routes["/v3/carbon-intensity/forecast"] = Reply(
        sample(EM / "carbon_intensity_forecast_shape.json")
    )


def wt(server):
    server.routes["/login"] = Reply({"token": WT_BEARER})
    server.routes["/v3/forecast"] = wt_forecast()


def uk(server):
    server.routes["/intensity"] = uk_intensity()
    server.routes["/intensity/*"] = Reply(sample(UK / "intensity_from_fw24h_real_2020-05-21.json"))


ALL = f"{TOKEN} {WT_PASS} {WT_BEARER} https://u:{URL_PW}@evil.example/x?api_key={QUERY_SECRET}&zone=FR"

# (provider, where the server echoes secrets, how the server is set up)
ECHOES = {
    "em-estimation-method": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": em_latest(estimationMethod=ALL)})),
    "em-emission-factor-type": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": em_latest(emissionFactorType=ALL)})),
    "em-value-is-the-token": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": em_latest(carbonIntensity=ALL)})),
    "em-datetime-is-the-token": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": em_latest(datetime=ALL)})),
    "em-401-body": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": Reply({"message": f"invalid token {ALL}"}, 401)})),
    "em-forecast-error-body": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/forecast": Reply({"error": ALL}, 403)})),
    "em-zone-field": ("em", lambda s: s.routes.update({
        "/v3/carbon-intensity/latest": em_latest(zone=ALL)})),
    "wt-region-name": ("wt", lambda s: s.routes.update({"/v3/forecast": wt_forecast({"region": ALL})})),
    "wt-units": ("wt", lambda s: s.routes.update({"/v3/forecast": wt_forecast({"units": ALL})})),
    "wt-value-is-the-token": ("wt", lambda s: s.routes.update({"/v3/forecast": wt_forecast(value=ALL)})),
    "wt-login-without-token": ("wt", lambda s: s.routes.update({"/login": Reply({"error": ALL})})),
    "wt-forecast-error-body": ("wt", lambda s: s.routes.update({"/v3/forecast": Reply({"error": ALL}, 500)})),
    "uk-index": ("uk", lambda s: s.routes.update({"/intensity": uk_intensity(index=ALL)})),
    "uk-value-is-the-token": ("uk", lambda s: s.routes.update({"/intensity": uk_intensity(actual=ALL)})),
    "uk-forecast-index": ("uk", lambda s: s.routes.update({"/intensity/*": Reply(
        sample(UK / "intensity_from_fw24h_real_2020-05-21.json").replace(b'"moderate"', json.dumps(ALL).encode()))})),
}  # fmt: skip


def settings_for(kind: str, server, tmp_path) -> Settings:
    base = dict(
        intensity_cache_dir=str(tmp_path / "cache"),
        intensity_timeout_s=TIMEOUT_S,
        # Every provider's credentials are configured, whichever provider is asked: any configured
        # secret is masked in any provider's answer.
        electricitymaps_token=config.Secret(TOKEN),
        watttime_username=WT_USER,
        watttime_password=config.Secret(WT_PASS),
    )
    if kind == "em":
        return Settings(
            intensity="electricitymaps:US-CAR-DUK", electricitymaps_url=server.url + "/v3", **base
        )
    if kind == "wt":
        return Settings(intensity="watttime:caiso_north", watttime_url=server.url, **base)
    return Settings(intensity="uk-carbon-intensity:GB", uk_ci_url=server.url, **base)


def leaked(text: str, kind: str = "wt") -> list[str]:
    # The WattTime bearer is a secret only where it was handed out (a WattTime login); elsewhere it
    # is a string this process never held.
    secrets = SECRETS if kind == "wt" else (TOKEN, WT_PASS)
    return [s for s in (*secrets, URL_PW, QUERY_SECRET) if s in text]


def everything_a_user_or_file_sees(s: Settings) -> str:
    m = footprint.apply(window(), s)
    m2 = footprint.apply(window(), s)  # the second window: the record without the one-time note
    blob = json.dumps(m.to_dict()) + json.dumps(m2.to_dict()) + "\n".join(m.notes)
    try:
        d = footprint.current_intensity(s)
    except ConfigError as e:  # documented: a malformed provider setting (the CLI exits 2 with it)
        blob += str(e)
    else:
        blob += json.dumps(d) + intensity_text(d)
    cache = Path(s.intensity_cache_dir)
    for f in cache.iterdir() if cache.is_dir() else ():
        blob += f.name + f.read_bytes().decode("utf-8", "replace")
    return blob


@pytest.mark.parametrize("case", list(ECHOES))
def test_a_server_echoing_secrets_never_gets_them_past_the_provider(server, tmp_path, case):
    kind, setup = ECHOES[case]
    {"em": em, "wt": wt, "uk": uk}[kind](server)
    setup(server)
    s = settings_for(kind, server, tmp_path)
    provider(s).refresh()
    blob = everything_a_user_or_file_sees(s)
    assert ALL not in blob
    assert leaked(blob, kind) == [], blob
    assert_clean(blob)


def test_the_echo_reaches_the_record_masked_not_dropped(server, tmp_path):
    # Proof the echo tests exercise a real path: the estimation method is recorded, masked.
    em(server)
    server.routes["/v3/carbon-intensity/latest"] = em_latest(estimationMethod=f"M {TOKEN}")
    s = settings_for("em", server, tmp_path)
    provider(s).refresh()
    m = footprint.apply(window(), s)
    assert m.intensity["estimate"] == "estimated (M ***)"


def test_an_old_cache_file_holding_a_secret_is_scrubbed_when_read(server, tmp_path):
    em(server)
    server.routes["/v3/carbon-intensity/latest"] = em_latest(estimationMethod="M X")
    s = settings_for("em", server, tmp_path)
    provider(s).refresh()
    (f,) = Path(s.intensity_cache_dir).glob("*.json")
    f.write_text(f.read_text().replace("M X", f"M {TOKEN}"))  # as an older carbonlab wrote it
    from carbonlab.footprint import providers

    providers.reset()
    p = provider(s)
    assert TOKEN not in json.dumps(footprint.apply(window(), s).to_dict())
    assert p.status(kick=False).snapshot.estimate == "estimated (M ***)"


URL_SETTINGS = [
    ("uk_ci_url", "uk-carbon-intensity:GB", ""),
    ("electricitymaps_url", "electricitymaps:FR", "/v3"),
    ("watttime_url", "watttime:caiso_north", ""),
]


@pytest.mark.parametrize("setting, spec, suffix", URL_SETTINGS)
def test_userinfo_in_a_url_setting_is_refused_naming_the_setting(
    server, tmp_path, setting, spec, suffix
):
    var = f"CARBONLAB_{setting.upper()}"
    url = f"http://alice:{URL_PW}@{server.netloc}{suffix}"
    # From the environment: a settings error naming the variable, without the password.
    with pytest.raises(ConfigError) as e:
        config.resolve(env={var: url, "CARBONLAB_INTENSITY": spec}, cwd=tmp_path)
    assert var in str(e.value) and URL_PW not in str(e.value) and "alice" not in str(e.value)
    # Set in code (bypassing the settings' check): the static figure, a note naming the setting.
    s = settings_for("uk", server, tmp_path)
    s.intensity = spec
    setattr(s, setting, url)
    blob = everything_a_user_or_file_sees(s)
    assert server.requests == []  # nothing was sent with the credential
    assert leaked(blob) == [] and "alice" not in blob
    m = footprint.apply(window(), s)
    assert m.intensity["fallback"]["provider"].startswith(spec.split(":")[0])
    assert setting in m.intensity["fallback"]["reason"] and "user:password@" in blob
    assert "static" in m.intensity["source"]


@pytest.mark.parametrize("setting, spec, suffix", URL_SETTINGS)
def test_userinfo_in_the_raw_url_variable_is_refused(
    server, tmp_path, monkeypatch, setting, spec, suffix
):
    # The providers read CARBONLAB_*_URL themselves when the settings hold none.
    var = f"CARBONLAB_{setting.upper()}"
    monkeypatch.setenv(var, f"http://alice:{URL_PW}@{server.netloc}{suffix}")
    s = settings_for("uk", server, tmp_path)
    s.intensity, s.uk_ci_url = spec, None
    blob = everything_a_user_or_file_sees(s)
    assert server.requests == []
    assert leaked(blob) == [] and "alice" not in blob
    assert var in blob


def cli(args, tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CARBONLAB_")}
    e.update(
        CARBONLAB_INTENSITY_CACHE_DIR=str(tmp_path / "cache"),
        CARBONLAB_INTENSITY_TIMEOUT_S="0.5",
        CARBONLAB_ELECTRICITYMAPS_TOKEN=TOKEN,
        CARBONLAB_WATTTIME_USERNAME=WT_USER,
        CARBONLAB_WATTTIME_PASSWORD=WT_PASS,
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
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


CLI_CASES = {
    "em-estimation-method": ("em", "electricitymaps:US-CAR-DUK", "CARBONLAB_ELECTRICITYMAPS_URL", "/v3"),
    "wt-region-name": ("wt", "watttime:caiso_north", "CARBONLAB_WATTTIME_URL", ""),
    "uk-index": ("uk", "uk-carbon-intensity:GB", "CARBONLAB_UK_CI_URL", ""),
    "em-value-is-the-token": ("em", "electricitymaps:US-CAR-DUK", "CARBONLAB_ELECTRICITYMAPS_URL", "/v3"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLI_CASES))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_carbonlab_intensity_output_carries_no_echoed_secret(server, tmp_path, case, as_json):
    kind, spec, var, suffix = CLI_CASES[case]
    {"em": em, "wt": wt, "uk": uk}[kind](server)
    ECHOES[case][1](server)
    r = cli([spec, *(["--json"] if as_json else [])], tmp_path, **{var: server.url + suffix})
    assert r.returncode == 0, r.stderr
    assert server.requests  # the echoing server was asked
    out = r.stdout + r.stderr
    assert leaked(out, kind) == [], out
    assert_clean(out)


@pytest.mark.parametrize("setting, spec, suffix", URL_SETTINGS)
def test_carbonlab_intensity_refuses_userinfo_in_a_url_variable(
    server, tmp_path, setting, spec, suffix
):
    var = f"CARBONLAB_{setting.upper()}"
    r = cli([spec], tmp_path, **{var: f"http://alice:{URL_PW}@{server.netloc}{suffix}"})
    assert r.returncode == 2 and r.stdout == ""
    assert var in r.stderr and URL_PW not in r.stderr and "alice" not in r.stderr
    assert server.requests == []
    assert_clean(r.stderr)


def test_scrub_text_forms():
    assert scrub_text(f"a {TOKEN} b", (TOKEN,)) == "a *** b"
    assert scrub_text("https://bob:pw@host/p") == "https://***@host/p"
    assert scrub_text("GET /x?zone=FR&auth-token=zz9&access_key=k1") == (
        "GET /x?zone=FR&auth-token=***&access_key=***"
    )
    assert scrub_text("Authorization: Bearer abc123def456") == "Authorization: Bearer ***"
    assert scrub_text("token received") == "token received"  # ordinary words stay
    assert intensity.lookup("FR").source == scrub_text(intensity.lookup("FR").source, (TOKEN,))
