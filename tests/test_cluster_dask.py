"""carbonlab on a real Dask cluster: a 2-worker LocalCluster (worker processes) whose workers load the
simulated NVML through their environment, so GPU components, per-host de-duplication and per-client
attribution are exercised on the real engine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

import carbonlab  # noqa: E402
from carbonlab import cluster  # noqa: E402
from tests.faults import assert_clean  # noqa: E402
from tests.simnvml import CONFIG_ENV, SimGpu, config_text  # noqa: E402

W_PER_CORE = 10.0
GPU_W = 100.0
ROOT = Path(__file__).resolve().parents[1]


def busy(seconds: float) -> float:
    """Burn ``seconds`` of this thread's CPU; returns the thread CPU it spent."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        pass
    return time.thread_time() - t0


@pytest.fixture(scope="module")
def dask_cluster(simnvml_lib, tmp_path_factory):
    """One LocalCluster for the module; its worker processes inherit the simulated NVML (one
    100 W GPU, real clock) and a stated CPU model (10 W per core) from the environment."""
    conf = tmp_path_factory.mktemp("simnvml-dask") / "sim.conf"
    # Each worker process computes on the GPU ("process self": NVML lists the process asking),
    # so NVML's per-process share is there for the workers' GPU attribution.
    gpu = SimGpu(name="NVIDIA A100-SXM4-40GB", power=GPU_W, processes=[("self", 1 << 30, 50)])
    conf.write_text(config_text(gpu, clock="real"))
    with pytest.MonkeyPatch.context() as mp:
        old = os.environ.get("LD_LIBRARY_PATH")
        mp.setenv("LD_LIBRARY_PATH", str(simnvml_lib.parent) + (os.pathsep + old if old else ""))
        mp.setenv(CONFIG_ENV, str(conf))
        mp.setenv("CARBONLAB_CPU_W_PER_CORE", str(W_PER_CORE))
        mp.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        mp.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        # distributed's own GPU dashboard calls NVML functions the simulator does not have (the
        # nanny hands its config to the workers, also when it restarts one).
        with dask.config.set({"distributed.diagnostics.nvml": False}):
            lc = distributed.LocalCluster(
                processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
            )
            client = distributed.Client(lc)
            try:
                yield lc, client
            finally:
                cluster.unregister()
                client.close()
                lc.close()


@pytest.fixture
def attached(dask_cluster):
    import carbonlab.dask

    lc, client = dask_cluster
    src = carbonlab.dask.attach(client)
    try:
        yield client, src
    finally:
        carbonlab.dask.detach()


def _workers(client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


def _new_worker(client, before: set[str], timeout: float = 60.0) -> str:
    """The address of a worker not in `before`, once the scheduler lists one. (Waiting for a count
    raced: a worker of `before` restarting by then made the count with no new name.)"""
    deadline = time.monotonic() + timeout
    while True:
        new = sorted(set(_workers(client)) - before)
        if new:
            return new[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no new worker within {timeout:.0f} s: {_workers(client)}")
        time.sleep(0.05)


def _remote(m, kind: str) -> list:
    return [c for c in m.components if c.location and c.kind == kind]


def test_busy_task_on_each_worker_is_charged_cpu_time_times_w_per_core(attached):
    client, _ = attached
    workers = _workers(client)
    with carbonlab.track("busy") as m:
        futs = [
            client.submit(busy, 0.4, workers=[w], pure=False, allow_other_workers=False)
            for w in workers
        ]
        spent = client.gather(futs)
    cpus = {c.location["worker"]: c for c in _remote(m, "cpu")}
    assert sorted(cpus) == workers
    for w, s in zip(workers, spent):
        c = cpus[w]
        assert c.method == "cpu-time-model" and c.scope == "tasks"
        assert c.location["engine"] == "dask" and c.location["host"] == socket.gethostname()
        assert c.params["w_per_core"] == W_PER_CORE
        assert c.energy_j == pytest.approx(s * W_PER_CORE, rel=0.10)
        assert c.params["gross_energy_j"] >= c.energy_j
        assert 0.0 < c.params["share"] <= 1.0
    d = m.to_dict()
    remote = [c for c in d["components"] if "location" in c]
    assert {c["location"]["worker"] for c in remote} == set(workers)
    assert all("location" not in c for c in d["components"] if c not in remote)
    from carbonlab.summary import measurement_text

    text = measurement_text(m)
    assert all(f"@ dask {w} on {socket.gethostname()}" in text for w in workers)
    assert m.energy_j == pytest.approx(sum(c.energy_j for c in m.components))


def test_gpu_shared_by_the_hosts_workers_is_counted_once(attached):
    client, _ = attached
    workers = _workers(client)
    with carbonlab.track("gpu") as m:
        client.gather(
            [
                client.submit(busy, 0.6, workers=[w], pure=False, allow_other_workers=False)
                for w in workers
            ]
        )
    gpus = _remote(m, "gpu")
    assert len(gpus) == 1, [c.to_dict() for c in gpus]  # two workers, one host, one GPU
    g = gpus[0]
    assert g.method == "nvml-energy-counter"
    assert g.params["counted_once_per_host"] is True and g.params["host_workers"] == 2
    assert any("counted once for the host" in n for n in g.notes)
    # The device drew 100 W through the window (counter steps of 100 ms at each edge).
    assert g.params["gross_energy_j"] == pytest.approx(GPU_W * m.duration_s, abs=GPU_W * 0.25)
    # Only this client ran tasks on the host, and NVML gives each worker process its share of
    # the GPU (here: all of it, alone on it), so the share is all of it.
    assert g.scope == "tasks" and g.params["share"] == pytest.approx(1.0)
    assert g.params["attribution"] == "sm-share-x-task-cpu"
    assert g.params["worker_sm_shares"] == [1.0, 1.0]
    local_gpus = [c for c in m.components if c.kind == "gpu" and not c.location]
    assert local_gpus == []  # the kernel's process has no NVML: the GPU is remote only


def test_two_clients_on_one_cluster_are_each_charged_their_own_tasks(dask_cluster, attached):
    import carbonlab.dask

    lc, _ = dask_cluster
    client_a, src_a = attached
    w0 = _workers(client_a)[0]
    with distributed.Client(lc.scheduler_address) as client_b:
        src_b = carbonlab.dask.attach(client_b, register=False)
        b0 = src_b.edge()
        with carbonlab.track("two clients") as m:  # the window reads client A's source
            fa = client_a.submit(busy, 0.3, workers=[w0], pure=False, allow_other_workers=False)
            fb = client_b.submit(busy, 0.6, workers=[w0], pure=False, allow_other_workers=False)
            spent_a, spent_b = fa.result(), fb.result()
        comps_b, _ = src_b.components(b0, src_b.edge(), m.duration_s)
    cpu_a = next(c for c in _remote(m, "cpu") if c.location["worker"] == w0)
    cpu_b = next(c for c in comps_b if c.kind == "cpu" and c.location["worker"] == w0)
    assert cpu_a.params["tasks_cpu_s"] == pytest.approx(spent_a, rel=0.10)
    assert cpu_b.params["tasks_cpu_s"] == pytest.approx(spent_b, rel=0.10)
    assert cpu_a.energy_j == pytest.approx(spent_a * W_PER_CORE, rel=0.10)
    assert cpu_b.energy_j == pytest.approx(spent_b * W_PER_CORE, rel=0.10)
    # Each share is of the same worker's CPU: A's is about a third, B's about two thirds.
    assert cpu_a.params["share"] < 0.5 < cpu_b.params["share"]
    # On the shared GPU: the worker's NVML share (all of it) × A's part of that worker's tasks.
    gpu_a = _remote(m, "gpu")[0]
    assert gpu_a.params["attribution"] == "sm-share-x-task-cpu"
    assert gpu_a.params["share"] == pytest.approx(spent_a / (spent_a + spent_b), abs=0.1)


def test_nothing_attached_costs_nothing_and_import_does_not_load_distributed():
    assert cluster.sources() == [] and cluster.begin_all() == []
    code = (
        "import sys, carbonlab\n"
        "with carbonlab.track('x') as m: pass\n"
        "from carbonlab import cluster\n"
        "assert cluster.auto_attach() is None\n"
        "assert 'distributed' not in sys.modules and 'ray' not in sys.modules, 'imported'\n"
        "assert all('location' not in c for c in m.to_dict()['components'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr


def test_the_live_poller_thread_ends_when_no_window_reads_a_cluster(monkeypatch):
    """The thread that polls attached clusters while windows are open is reused from one stretch
    of windows to the next, and ends once none has read a cluster for LINGER_S: carbonlab leaves
    no thread behind in a kernel or a test session that stopped using a cluster."""
    poller = cluster.LivePoller()
    monkeypatch.setattr(poller, "LINGER_S", 0.05)
    monkeypatch.setattr(poller, "PERIOD_S", 0.01)
    poller.acquire([])
    first = poller._thread
    assert first is not None and first.name == "carbonlab-cluster" and first.is_alive()
    poller.release([])
    first.join(10)
    assert not first.is_alive() and poller._thread is None
    poller.acquire([])  # a later window: a thread again
    assert poller._thread is not None and poller._thread.is_alive()
    second = poller._thread
    poller.release([])
    second.join(10)
    assert not second.is_alive()


CLIENT_CODE = """
import sys, time
from distributed import Client

def busy(seconds):
    t0 = time.thread_time()
    while time.thread_time() - t0 < seconds:
        pass
    return time.thread_time() - t0

with Client(sys.argv[1]) as c:
    print(sum(c.gather([c.submit(busy, 0.3, pure=False) for _ in range(2)])))
"""


def test_carbonlab_run_dask_measures_the_commands_cluster_work(dask_cluster, tmp_path):
    import json

    lc, _ = dask_cluster
    addr = lc.scheduler_address
    out = tmp_path / "m.json"
    cmd = [sys.executable, "-m", "carbonlab.cli", "run", "--dask", addr, "--json", str(out)]
    cmd += ["--", sys.executable, "-c", CLIENT_CODE, addr]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARBONLAB_HISTORY": str(tmp_path / "h.sqlite")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    spent = float(r.stdout.strip().splitlines()[-1])
    d = json.loads(out.read_text())
    cpus = [c for c in d["components"] if c.get("location") and c["kind"] == "cpu"]
    assert {c["location"]["engine"] for c in cpus} == {"dask"} and len(cpus) == 2
    # Gross figures (the command's clients cannot be told from others): at least its tasks.
    assert sum(c["energy_j"] for c in cpus) >= 0.95 * spent * W_PER_CORE
    assert all(c["scope"] == "process" for c in cpus)
    assert any("cannot be told from other clients" in n for n in d["notes"])
    assert_clean(r.stderr)


@pytest.mark.fault("cli")
def test_carbonlab_run_dask_unreachable_is_a_usage_error_before_the_command(tmp_path):
    marker = tmp_path / "ran"
    cmd = [sys.executable, "-m", "carbonlab.cli", "run", "--dask", "tcp://127.0.0.1:9", "--"]
    cmd += [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "--dask tcp://127.0.0.1:9: cannot connect" in r.stderr
    assert not marker.exists()
    assert_clean(r.stderr)


PYTEST_CONFTEST = """
import os, pytest
from distributed import Client
import carbonlab.dask

@pytest.fixture(scope="session")
def dask_client():
    with Client(os.environ["TEST_DASK_ADDRESS"], set_as_default=False) as client:
        carbonlab.dask.attach(client)
        yield client
        carbonlab.dask.detach(client)
"""

PYTEST_TESTS = """
import pytest
from tests.test_cluster_dask import busy  # importable by the scheduler and the workers too

def test_remote_a(dask_client):
    assert dask_client.submit(busy, 0.3, pure=False).result() >= 0.3

def test_remote_b(dask_client):
    assert dask_client.submit(busy, 0.3, pure=False).result() >= 0.3

@pytest.mark.carbon_budget("1 J")  # its task alone is 0.3 s x 10 W = 3 J on the cluster
def test_remote_over_budget(dask_client):
    assert dask_client.submit(busy, 0.3, pure=False).result() >= 0.3
"""


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_carbon_charges_each_test_its_cluster_work(dask_cluster, tmp_path, mode):
    import json

    lc, _ = dask_cluster
    (tmp_path / "conftest.py").write_text(PYTEST_CONFTEST)
    (tmp_path / "test_remote.py").write_text(PYTEST_TESTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_DASK_ADDRESS": lc.scheduler_address}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--carbon"]
    cmd += ["--carbon-json", str(tmp_path / "run.json"), *mode]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr  # the over-budget test only
    assert "1 failed, 2 passed" in r.stdout, r.stdout
    from carbonlab.compare import expand_run

    doc = expand_run(json.loads((tmp_path / "run.json").read_text()))
    assert len(doc["tests"]) == 3
    over = next(t for t in doc["tests"] if t["nodeid"].endswith("over_budget"))
    assert over["budget"]["status"] == "over" and over["budget"]["failed_test"] is True
    for t in doc["tests"]:
        cpus = [c for c in t["call"]["components"] if c.get("location") and c["kind"] == "cpu"]
        assert {c["location"]["engine"] for c in cpus} == {"dask"}, t["call"]
        mine = sum(c["params"]["tasks_cpu_s"] for c in cpus)
        assert mine == pytest.approx(0.3, rel=0.15), t["nodeid"]  # its own task, not the other's
    assert_clean(r.stdout + r.stderr)


def test_load_ext_attaches_the_default_client_and_the_magic_detaches_it(
    dask_cluster, tmp_path, monkeypatch
):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from carbonlab.jupyter import extension

    lc, client = dask_cluster
    assert distributed.default_client() is client
    monkeypatch.setenv("CARBONLAB_HISTORY", str(tmp_path / "history.sqlite"))
    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    try:
        with capture_output() as cap:
            ip.run_line_magic("load_ext", "carbonlab")
        assert [s.client for s in cluster.sources()] == [client]
        assert "measuring the dask cluster" in cap.stdout
        ip.user_ns.update(client=client, busy=busy)
        with capture_output():
            ip.run_cell("client.submit(busy, 0.2, pure=False).result()", store_history=True)
        m = extension.get(ip).last.measurement
        cpus = [c for c in m.components if c.location and c.kind == "cpu"]
        assert sum(c.params["tasks_cpu_s"] for c in cpus) == pytest.approx(0.2, rel=0.15)
        with capture_output() as cap:
            ip.run_line_magic("carbon", "cluster status")
        assert "dask cluster" in cap.stdout
        with capture_output() as cap:
            ip.run_line_magic("carbon", "cluster off")
        assert cluster.sources() == []
        with pytest.raises(UsageError, match="expected no argument, dask, ray, off or status"):
            ip.run_line_magic("carbon", "cluster bogus")
        with capture_output() as cap:
            ip.run_line_magic("carbon", "cluster")
        assert [s.client for s in cluster.sources()] == [client]
    finally:
        cluster.unregister()
        ip.run_line_magic("unload_ext", "carbonlab")
        InteractiveShell.clear_instance()


AFTER_LOAD_CODE = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from carbonlab.jupyter import extension

ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "carbonlab")

def cell(code):
    with capture_output() as cap:
        r = ip.run_cell(code, store_history=True)
    assert r.success, (code, r.error_in_exec)
    m = extension.get(ip).last.measurement
    dask = [c.to_dict() for c in m.components if c.location and c.location["engine"] == "dask"]
    return {"out": cap.stdout, "dask": dask, "notes": m.notes}

out = {"before": cell("x = 1"), "distributed_before": "distributed" in sys.modules}
out["client"] = cell(
    "from distributed import Client\\n"
    "from tests.test_cluster_dask import busy\\n"
    f"client = Client({sys.argv[1]!r})"
)
out["work"] = cell("client.submit(busy, 0.3, pure=False).result()")
out["again"] = cell("client.submit(busy, 0.1, pure=False).result()")
ip.run_line_magic("carbon", "cluster off")
out["off"] = cell("client.submit(busy, 0.1, pure=False).result()")
ip.run_cell("client.close()")
print(json.dumps(out))
"""


def test_a_client_made_after_load_ext_is_attached_at_the_next_cell(dask_cluster, tmp_path):
    """The usual order in a notebook: %load_ext carbonlab, then a Client. The next measured cell
    attaches it (said in one line, once) and measures its work; after %carbon cluster off it is
    never attached again by itself."""
    import json

    lc, _ = dask_cluster
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CARBONLAB_HISTORY": str(tmp_path / "h.sqlite")}
    r = subprocess.run(
        [sys.executable, "-c", AFTER_LOAD_CODE, lc.scheduler_address],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["distributed_before"] is False  # nothing imported or attached before the Client
    assert out["before"]["dask"] == [] and out["client"]["dask"] == []
    said = f"carbonlab: measuring the dask cluster {lc.scheduler_address} too"
    assert said in out["work"]["out"]  # at the start of the first cell after the Client
    cpus = [c for c in out["work"]["dask"] if c["kind"] == "cpu"]
    assert len(cpus) == 2, out["work"]
    assert sum(c["params"]["tasks_cpu_s"] for c in cpus) == pytest.approx(0.3, rel=0.15)
    assert out["again"]["dask"] and said not in out["again"]["out"]  # attached once, said once
    assert out["off"]["dask"] == [] and said not in out["off"]["out"]  # the user detached
    assert_clean(r.stderr)


class _Proxy:
    """A TCP relay to the scheduler that can stop relaying: the scheduler becomes unreachable
    to a client connected through it, while the connection stays open (the worst case: a hang)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.open = threading.Event()
        self.open.set()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.open.set()
        self.sock.close()


def _cells_after_load(ip, n: int) -> tuple[list[float], list[str], list]:
    """Run ``n`` trivial measured cells: the seconds each took, its output, its Measurement."""
    from IPython.utils.capture import capture_output

    from carbonlab.jupyter import extension

    took, outs, ms = [], [], []
    for _ in range(n):
        t0 = time.monotonic()
        with capture_output() as cap:
            r = ip.run_cell("x = 6 * 7", store_history=True)
        took.append(time.monotonic() - t0)
        outs.append(cap.stdout)
        assert r.success and ip.user_ns["x"] == 42
        ms.append(extension.get(ip).last.measurement)
    return took, outs, ms


@pytest.mark.fault("hardware")
def test_a_hung_scheduler_cannot_stall_the_cell_that_attaches_its_client(
    dask_cluster, tmp_path, monkeypatch
):
    """The automatic attach at a cell's start waits 1 s at most for the scheduler (it was 5 s
    per plugin: a cell stalled 10 s), then goes on in the background and the cell runs without
    the cluster; a scheduler that answers later is attached then, said at the next cell, which is
    measured on it."""
    from IPython.core.interactiveshell import InteractiveShell

    lc, _ = dask_cluster
    monkeypatch.setenv("CARBONLAB_HISTORY", str(tmp_path / "history.sqlite"))
    monkeypatch.chdir(tmp_path)
    proxy = _Proxy(lc.scheduler_address)
    ip = InteractiveShell.instance()
    try:
        with monkeypatch.context() as mp:  # no default client yet when the extension loads
            mp.setattr(cluster, "_dask_default_client", lambda: None)
            ip.run_line_magic("load_ext", "carbonlab")
        with distributed.Client(proxy.address) as client:  # the default client from now on
            proxy.open.clear()  # its scheduler hangs
            took, outs, ms = _cells_after_load(ip, 1)
            assert cluster.sources() == []
            proxy.open.set()  # it answers again: the attach in the background ends
            cluster.attaching.join(60)
            took2, outs2, ms2 = _cells_after_load(ip, 2)
            assert [s.client for s in cluster.sources()] == [client]
    finally:
        cluster.unregister()
        ip.run_line_magic("unload_ext", "carbonlab")
        InteractiveShell.clear_instance()
        proxy.close()
    assert cluster.ATTACH_TIMEOUT_S == 1.0 and took[0] < 1.0 + 0.5, took
    assert "did not take carbonlab's plugins within 1 s; attaching in the background" in outs[0]
    assert [c for c in ms[0].components if c.location] == []
    assert {c.kind for c in ms[0].components} >= {"cpu", "ram"}
    assert "carbonlab: measuring the dask cluster" in outs2[0], outs2
    assert [c for c in ms2[0].components if c.location], ms2[0].notes  # measured on it
    assert outs2[1] == ""  # said once
    assert_clean("\n".join(outs + outs2))


@pytest.mark.fault("hardware")
def test_an_attach_that_fails_in_the_background_is_said_once_at_a_later_cell(
    dask_cluster, tmp_path, monkeypatch
):
    from IPython.core.interactiveshell import InteractiveShell

    lc, _ = dask_cluster
    monkeypatch.setenv("CARBONLAB_HISTORY", str(tmp_path / "history.sqlite"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cluster, "ATTACH_TIMEOUT_S", 0.2)
    monkeypatch.setattr(cluster, "ATTACH_BACKGROUND_S", 0.5)
    proxy = _Proxy(lc.scheduler_address)
    ip = InteractiveShell.instance()
    try:
        with monkeypatch.context() as mp:
            mp.setattr(cluster, "_dask_default_client", lambda: None)
            ip.run_line_magic("load_ext", "carbonlab")
        with distributed.Client(proxy.address):
            proxy.open.clear()  # its scheduler hangs for good
            _, outs, _ = _cells_after_load(ip, 1)
            cluster.attaching.join(60)
            _, outs2, ms2 = _cells_after_load(ip, 2)
            assert cluster.sources() == []
            proxy.open.set()
    finally:
        cluster.unregister()
        ip.run_line_magic("unload_ext", "carbonlab")
        InteractiveShell.clear_instance()
        proxy.close()
    assert "attaching in the background" in outs[0]
    said = "carbonlab: the default Dask client was not attached (TimeoutError: the scheduler "
    assert said + "did not answer within 0.5 s)" in outs2[0], outs2
    assert outs2[1] == ""  # tried once, said once
    assert {c.kind for c in ms2[1].components} >= {"cpu", "ram"}
    assert_clean("\n".join(outs + outs2))


@pytest.mark.fault("hardware")
def test_live_polls_give_the_clusters_power_while_a_window_is_open(attached):
    client, _ = attached
    w0 = _workers(client)[0]
    polls0 = cluster.POLLER.polls
    from carbonlab.window import Window

    w = Window("live").begin()
    try:
        fut = client.submit(busy, 3.0, workers=[w0], pure=False, allow_other_workers=False)
        deadline = time.monotonic() + 30
        live = None
        while time.monotonic() < deadline:  # polled at ≤ 1 Hz: wait for two polls with work
            live = w.remote_live()
            if live and live["power_w"] and cluster.POLLER.polls >= polls0 + 2:
                break
            time.sleep(0.1)
        # What the sidebar and the in-cell widget get: a "cluster" entry in each sample.
        from carbonlab.jupyter.comm import LiveRun
        from carbonlab.sampler import Sample

        run = LiveRun(sampler=w.rt.sampler, window=w, sinks=[], open_data=lambda m: ({}, None))
        msg = run.sample_message(Sample(w.t0 + 1.0, tuple(w.e0), (None,) * len(w.e0)))
        fut.result()
    finally:
        m = w.end()
    assert msg["power_w"]["cluster"] > 0 and msg["energy_j"]["cluster"] > 0
    assert live is not None and live["power_w"] > 0 and live["energy_j"] > 0
    assert set(live["by_host"]) == {socket.gethostname()}
    # Per engine and host, for the sidebar row's details: both workers measured on this host.
    (host,) = msg["cluster_hosts"]
    assert host["engine"] == "dask" and host["host"] == socket.gethostname()
    assert host["workers"] == 2
    assert host["energy_j"] == pytest.approx(msg["energy_j"]["cluster"], abs=1e-3)
    assert host["power_w"] == pytest.approx(msg["power_w"]["cluster"], abs=1e-2)
    (row,) = live["hosts"]
    assert row["energy_j"] == pytest.approx(live["by_host"][socket.gethostname()])
    # Live figures are the cluster's gross: the GPU's 100 W and one busy core's 10 W (± what
    # the other worker and the event loops spend, and the polls' timing).
    assert GPU_W * 0.8 <= live["power_w"] <= (GPU_W + 2 * W_PER_CORE) * 1.3
    n = cluster.POLLER.polls
    assert n - polls0 <= m.duration_s / cluster.LivePoller.PERIOD_S + 2  # ≤ 1 Hz
    assert cluster.POLLER._stop is None  # no window open: the poller stopped


@pytest.mark.fault("hardware")
def test_unreachable_scheduler_never_fails_the_window(dask_cluster):
    import carbonlab.dask

    lc, _ = dask_cluster
    proxy = _Proxy(lc.scheduler_address)
    try:
        with distributed.Client(proxy.address) as client:
            src = carbonlab.dask.attach(client)
            try:
                with carbonlab.track("reachable") as ok:
                    pass
                assert _remote(ok, "cpu"), ok.notes
                proxy.open.clear()  # the scheduler stops answering
                t0 = time.monotonic()
                with carbonlab.track("unreachable") as m:
                    x = sum(range(1000))
                took = time.monotonic() - t0
            finally:
                carbonlab.dask.detach()
                proxy.open.set()
            assert x == 499500
            # One timeout at most: the begin edge got no answer, so the end edge is not read.
            assert took < cluster.TIMEOUT_S + 0.5
            assert [c for c in m.components if c.location] == []
            assert {c.kind for c in m.components} >= {"cpu", "ram"}  # local figures complete
            said = [n for n in m.notes if src.describe() in n]
            assert len(said) == 1, m.notes
            assert "not read at the window's begin (no answer within 1 s)" in said[0]
            assert "cluster work not measured" in said[0] and "retrying in 30 s" in said[0]
            assert_clean("\n".join(m.notes))
    finally:
        proxy.close()


@pytest.mark.fault("hardware")
def test_unreachable_scheduler_is_tried_once_per_back_off_period_then_read_again(
    dask_cluster, monkeypatch
):
    """A scheduler that stops answering is not waited on by every window: after a failed edge
    the cluster is not read for 30 s, then tried again (60 s, 120 s, ... after each further
    failure); the window that waited says why, each window in between says briefly that the
    cluster was not read; an answer resets it."""
    import carbonlab.dask

    lc, _ = dask_cluster
    proxy = _Proxy(lc.scheduler_address)
    now = [1000.0]  # the back-off's clock, moved by hand: no window waits out a period
    reads: list[float] = []
    try:
        with distributed.Client(proxy.address, set_as_default=False) as client:
            src = carbonlab.dask.attach(client)
            name = src.describe()
            src.clock = lambda: now[0]
            collect = src.collect

            def counted(*args, **kwargs):  # each read's answer waited on (sends cost nothing)
                reads.append(now[0] - 1000.0)
                return collect(*args, **kwargs)

            src.collect = counted
            windows = []
            try:
                proxy.open.clear()  # the scheduler stops answering
                for t in (0.0, 1.0, 29.9, 30.0, 31.0, 89.9, 90.0, 209.0):
                    now[0] = 1000.0 + t
                    t0 = time.monotonic()
                    with carbonlab.track(f"t={t}") as m:
                        pass
                    windows.append((t, time.monotonic() - t0, m))
                status = cluster.status_text()
                proxy.open.set()  # it answers again
                now[0] = 1000.0 + 210.0  # 90 s + the third period (120 s)
                with carbonlab.track("back") as back:
                    pass
                with monkeypatch.context() as mp:
                    # Both edges read whatever the race: a window shorter than a round trip is
                    # read at its begin only (tested apart; "down again" below may take that
                    # path: the same note).
                    mp.setattr(cluster, "SHORT_WINDOW_MAX_S", 0.0)
                    with carbonlab.track("after") as after:
                        pass
                n_ok = len(reads)
                proxy.open.clear()  # down again: the back-off starts over at 30 s
                with carbonlab.track("down again") as again:
                    pass
            finally:
                carbonlab.dask.detach()
                proxy.open.set()
    finally:
        proxy.close()
    # One read per period: at 0 s, then 30 s later, then 60 s after that; none in between.
    # Then both edges of the two windows once it answers again, and one for the next failure.
    assert reads == [0.0, 30.0, 90.0, *[210.0] * 5], reads
    assert n_ok == 7
    for t, took, m in windows:
        said = [n for n in m.notes if name in n]
        assert [c for c in m.components if c.location] == [], t
        assert {c.kind for c in m.components} >= {"cpu", "ram"}, t  # local figures complete
        if t in (0.0, 30.0, 90.0):  # tried: one timeout at most, said once
            assert took < cluster.TIMEOUT_S + 0.5, (t, took)
            (note,) = said
            assert "cluster work not measured, local figures complete" in note
            wait = {0.0: 30, 30.0: 60, 90.0: 120}[t]
            assert note.endswith(f"retrying in {wait} s"), note
            assert note.startswith(f"{name}: still not read") == (t > 0), note
        else:  # backing off: not read, not waited on; the window still says it lacks the cluster
            assert took < cluster.TIMEOUT_S / 2, (t, took)
            (note,) = said
            assert note.startswith(f"{name}: not read (it did not answer; retrying in "), note
            assert note.endswith("cluster work not measured, local figures complete"), note
        assert_clean("\n".join(m.notes))
    assert status == f"carbonlab: measuring {name} (did not answer its last read; retrying in 1 s)"
    for m in (back, after):
        assert _remote(m, "cpu") and not any(name in n for n in m.notes), m.notes
    (note,) = [n for n in again.notes if name in n]
    assert "still" not in note and note.endswith("retrying in 30 s"), note


@pytest.mark.fault("hardware")
def test_one_unreachable_cluster_of_two_costs_one_timeout_and_is_not_polled(attached, dask_cluster):
    """Two clusters attached, one unreachable at the window's begin: the other is read at both
    edges and polled live; the silent one is read once (not at the end, not by the poller)."""
    import carbonlab.dask

    client, good = attached
    lc, _ = dask_cluster
    w0 = _workers(client)[0]
    proxy = _Proxy(lc.scheduler_address)
    try:
        with distributed.Client(proxy.address, set_as_default=False) as other:
            bad = carbonlab.dask.attach(other)
            name = bad.describe()
            collect, reads = bad.collect, []  # each read's answer waited on
            bad.collect = lambda *a, **k: reads.append(1) or collect(*a, **k)
            polls0 = cluster.POLLER.polls
            try:
                proxy.open.clear()
                t0 = time.monotonic()
                with carbonlab.track("one of two") as m:
                    begin_s = time.monotonic() - t0
                    fut = client.submit(busy, 3.0, workers=[w0], pure=False)
                    deadline = time.monotonic() + 30
                    while cluster.POLLER.polls < polls0 + 2 and time.monotonic() < deadline:
                        time.sleep(0.05)  # the live polls of the window (≤ 1 Hz)
                    polls = cluster.POLLER.polls - polls0
                    fut.result()
                    t1 = time.monotonic()
                end_s = time.monotonic() - t1
            finally:
                cluster.unregister(bad)
                proxy.open.set()
    finally:
        proxy.close()
    assert polls >= 2
    assert reads == [1]  # its begin edge only: not its end edge, not the live polls
    assert begin_s < cluster.TIMEOUT_S + 0.5 and end_s < cluster.TIMEOUT_S / 2
    cpu = next(c for c in _remote(m, "cpu") if c.location["worker"] == w0)
    assert cpu.params["tasks_cpu_s"] == pytest.approx(3.0, rel=0.10)
    (note,) = [n for n in m.notes if name in n]
    assert "not read at the window's begin" in note and "retrying in 30 s" in note
    assert not any(good.describe() in n for n in m.notes), m.notes


@pytest.mark.fault("hardware")
def test_the_back_off_doubles_up_to_five_minutes_and_an_answer_resets_it():
    class Refused(cluster.RemoteSource):
        engine = "dask"
        up = False

        def read(self, since_wall=None):
            if not self.up:
                raise ConnectionRefusedError(111, "Connection refused")
            return {}

    src = Refused()
    now = [0.0]
    src.clock = lambda: now[0]
    cluster.register(src)
    try:
        waits = []
        for _ in range(7):
            e = src.window_edge("begin")
            waits.append(int(e.note.rsplit("retrying in ", 1)[1].split()[0]))
            assert src.window_edge("begin").skipped  # nothing read until the period is over
            now[0] += src.backing_off()
        assert waits == [30, 60, 120, 240, 300, 300, 300]
        assert "Connection refused" in e.note
        src.up = True
        assert src.window_edge("begin").error is None and src.backing_off() is None
        src.up = False
        assert src.window_edge("end").note.endswith("retrying in 30 s")
    finally:
        cluster.unregister(src)


def test_worker_joining_mid_window_is_counted_from_when_it_joined(dask_cluster, attached):
    lc, _ = dask_cluster
    client, _ = attached
    before = set(_workers(client))
    try:
        with carbonlab.track("join") as m:
            lc.scale(len(before) + 1)
            new = _new_worker(client, before)
            spent = client.submit(
                busy, 0.3, workers=[new], pure=False, allow_other_workers=False
            ).result()
    finally:
        lc.scale(len(before))
        deadline = time.monotonic() + 60
        while len(_workers(client)) > len(before) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert any(new in n and "joined during the window" in n for n in m.notes), m.notes
    cpu = next(c for c in _remote(m, "cpu") if c.location["worker"] == new)
    assert cpu.params["tasks_cpu_s"] == pytest.approx(spent, rel=0.10)
    assert cpu.energy_j == pytest.approx(spent * W_PER_CORE, rel=0.10)


@pytest.mark.fault("hardware")
def test_a_closed_client_is_said_once_and_detached(dask_cluster):
    import carbonlab.dask

    lc, _ = dask_cluster
    client = distributed.Client(lc.scheduler_address, set_as_default=False)
    src = carbonlab.dask.attach(client)
    try:
        client.close()
        with carbonlab.track("closed") as m:
            pass
        with carbonlab.track("after") as m2:
            pass
    finally:
        carbonlab.dask.detach()
    assert any("the client is closed; the cluster is detached" in n for n in m.notes), m.notes
    assert src not in cluster.sources()
    assert not any(src.describe() in n for n in m2.notes)  # said once
    assert_clean("\n".join(m.notes))


@pytest.mark.fault("hardware")
def test_one_hung_worker_is_left_out_and_the_others_count(attached, monkeypatch):
    """A worker that is alive and connected but silent (SIGSTOP) at a window's end: the
    scheduler asks each worker with its own timeout, so that worker alone is left out, named in a
    note, and the other's figures count. (Client.run waited for every worker: one hung worker
    lost the whole edge.)"""
    monkeypatch.setattr(cluster.LivePoller, "PERIOD_S", 3600.0)  # no live poll to fall back on
    client, _ = attached
    workers = _workers(client)
    pids = client.run(os.getpid)
    victim, survivor = workers
    t0 = None
    try:
        with carbonlab.track("hung") as m:
            spent = client.submit(
                busy, 0.3, workers=[survivor], pure=False, allow_other_workers=False
            ).result()
            os.kill(pids[victim], signal.SIGSTOP)  # alive, connected, silent
            t0 = time.monotonic()
        took = time.monotonic() - t0
        with carbonlab.track("still hung") as m2:  # silent at both edges now
            pass
    finally:
        os.kill(pids[victim], signal.SIGCONT)
    assert took < cluster.TIMEOUT_S + 1.0
    cpus = {c.location["worker"]: c for c in _remote(m, "cpu")}
    assert sorted(cpus) == [survivor], m.notes  # the others count
    assert cpus[survivor].energy_j == pytest.approx(spent * W_PER_CORE, rel=0.10)
    (note,) = [n for n in m.notes if victim in n]
    assert "did not answer at the window's end (no answer within 0.7 s)" in note, note
    assert "its energy in this window is not counted" in note
    assert not any("not read at the window's end" in n for n in m.notes), m.notes
    assert {c.kind for c in m.components if not c.location} >= {"cpu", "ram"}
    assert {c.location["worker"] for c in m2.components if c.location} == {survivor}
    assert any(victim in n and "no answer within 0.7 s" in n for n in m2.notes), m2.notes
    assert_clean("\n".join(m.notes + m2.notes))
    client.run(os.getpid)  # the worker answers again


@pytest.mark.fault("hardware")
def test_worker_killed_mid_window_is_noted_and_the_rest_counted(attached):
    client, _ = attached
    workers = _workers(client)
    pids = client.run(os.getpid)
    victim, survivor = workers[0], workers[1]
    with carbonlab.track("kill") as m:
        spent = client.submit(
            busy, 0.3, workers=[survivor], pure=False, allow_other_workers=False
        ).result()
        os.kill(pids[victim], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim not in client.scheduler_info()["workers"]
    note = next(n for n in m.notes if victim in n and "left during the window" in n)
    cpus = {c.location["worker"]: c for c in _remote(m, "cpu")}
    # Counted until its last live poll (≤ 1 Hz) when one came after the window's begin, else not.
    assert (victim in cpus) == ("counted until its last live reading" in note)
    assert cpus[survivor].energy_j == pytest.approx(spent * W_PER_CORE, rel=0.10)
    assert {c.kind for c in m.components if not c.location} >= {"cpu", "ram"}


@pytest.mark.fault("hardware")
def test_a_worker_that_leaves_cleanly_is_counted_until_it_left(dask_cluster, attached, monkeypatch):
    """A worker scaled down mid-window sends its last reading as it closes: its energy up to
    then counts, with a note, even when no live poll saw it (before, it counted only through a
    live poll taken after its work)."""
    monkeypatch.setattr(cluster.LivePoller, "PERIOD_S", 3600.0)  # no live poll in the window
    lc, _ = dask_cluster
    client, _ = attached
    client.wait_for_workers(2, timeout=60)  # (a worker killed by an earlier test restarts)
    before = _workers(client)
    try:
        with carbonlab.track("leave") as m:
            spent = dict(
                zip(
                    before,
                    client.gather(
                        [
                            client.submit(
                                busy, 0.3, workers=[w], pure=False, allow_other_workers=False
                            )
                            for w in before
                        ]
                    ),
                )
            )
            lc.scale(len(before) - 1)
            deadline = time.monotonic() + 60
            while len(_workers(client)) >= len(before) and time.monotonic() < deadline:
                time.sleep(0.05)
            (gone,) = set(before) - set(_workers(client))
    finally:
        lc.scale(len(before))
        client.wait_for_workers(len(before), timeout=60)
    note = next(n for n in m.notes if gone in n)
    assert "left during the window; counted until it left" in note, m.notes
    cpus = {c.location["worker"]: c for c in _remote(m, "cpu")}
    assert sorted(cpus) == before
    for w in before:
        assert cpus[w].params["tasks_cpu_s"] == pytest.approx(spent[w], rel=0.10), w
        assert cpus[w].energy_j == pytest.approx(spent[w] * W_PER_CORE, rel=0.10), w
    assert_clean("\n".join(m.notes))


def test_a_scheduler_without_carbonlabs_handler_is_read_with_client_run(attached):
    """A scheduler, or workers, whose carbonlab plugin is an older one (no read handler): the
    kernel falls back to Client.run, the figures the same."""
    import carbonlab.dask

    client, src = attached
    op = carbonlab.dask.READ_OP

    def drop(dask_scheduler):
        return dask_scheduler.handlers.pop(op, None) is not None

    def drop_w(dask_worker):
        return dask_worker.handlers.pop(op, None) is not None

    def put_back(dask_scheduler):
        dask_scheduler.handlers[op] = dask_scheduler.plugins["carbonlab"].read_workers

    def put_back_w(dask_worker):
        dask_worker.handlers[op] = carbonlab.dask._worker_read

    for remove, restore in ((drop, put_back), (drop_w, put_back_w)):
        run = client.run_on_scheduler if remove is drop else client.run
        assert run(remove)
        try:
            old = carbonlab.dask.DaskSource(client)
            snaps = old.read()
            assert old.direct is False and sorted(snaps) == _workers(client), remove
            assert all(x["ok"] for x in snaps.values())
        finally:
            run(restore)
    assert src.read() and src.direct is True


def test_a_windows_begin_is_not_waited_on_and_crossed_reads_are_put_back_in_order(dask_cluster):
    """The begin edge is sent without the window waiting for it (a scheduler that hangs costs
    the begin nothing; the end waits what is left of the 1 s); two reads that cross on their way
    (a very short window) are taken in the order the workers read them."""
    import carbonlab.dask
    from carbonlab.window import Window

    lc, _ = dask_cluster
    proxy = _Proxy(lc.scheduler_address)
    try:
        with distributed.Client(proxy.address, set_as_default=False) as client:
            src = carbonlab.dask.attach(client)
            name = src.describe()
            try:
                proxy.open.clear()
                w = Window("begin").begin()
                ((s, b),) = w.remote
                assert s is src and b.error is None and b.pending is not None  # on its way
                m = w.end()
            finally:
                cluster.unregister(src)
                proxy.open.set()
    finally:
        proxy.close()
    (note,) = [n for n in m.notes if name in n]
    assert "not read at the window's begin (no answer within 1 s)" in note
    # Crossed: the end's reading was taken before the begin's.
    r = cluster.RemoteSource()
    r.engine = "dask"
    early, late = _snap("h1", ["GPU-a"], 10.0), _snap("h1", ["GPU-a"], 12.5)
    early["wall"], late["wall"] = 1.0, 1.001
    comps, _ = cluster.components(
        r, cluster.Edge({"w": late}, 0.9), cluster.Edge({"w": early}, 0.91), 0.01
    )
    (gpu,) = comps
    assert gpu.energy_j == 2.5


def _snap(host: str, gpus: list[str], energy: float, cpu_s: float = 0.0) -> dict:
    """A worker's snapshot as read_meters answers it (for the pure parts of the attribution)."""
    meters = [
        {
            "kind": "gpu",
            "device": g,
            "name": "GPU",
            "method": "nvml-energy-counter",
            "scope": "device",
            "params": {},
            "resolution_s": 0.1,
            "energy_j": energy,
            "notes": [],
        }
        for g in gpus
    ]
    return {"ok": True, "host": host, "pid": 1, "wall": 0.0, "opened_wall": -10.0,
            "opened_process_cpu_s": 0.0, "meters": meters, "unavailable": [],
            "process_cpu_s": cpu_s, "host_busy_cpu_s": None, "tasks_cpu_s": {},
            "tasks_total_cpu_s": 0.0, "task_tracking": None}  # fmt: skip


def test_each_gpu_is_counted_once_per_host_whichever_workers_see_it():
    """dask-cuda gives each worker one GPU; a plain cluster shows all of them to every worker;
    two hosts never share a device count."""
    src = cluster.RemoteSource()
    src.engine = "dask"
    cases = {
        "one GPU per worker": ({"w1": ["GPU-a"], "w2": ["GPU-b"]}, {"GPU-a": 1, "GPU-b": 1}),
        "every worker, every GPU": (
            {"w1": ["GPU-a", "GPU-b"], "w2": ["GPU-b", "GPU-a"]},
            {"GPU-a": 2, "GPU-b": 2},
        ),
    }
    for name, (seen, readers) in cases.items():
        b = cluster.Edge({w: _snap("h1", g, 100.0) for w, g in seen.items()}, wall=0.0)
        e = cluster.Edge({w: _snap("h1", g, 150.0) for w, g in seen.items()}, wall=1.0)
        comps, _ = cluster.components(src, b, e, 1.0)
        gpus = {c.device: c for c in comps if c.kind == "gpu"}
        assert sorted(gpus) == sorted(readers), name
        for dev, c in gpus.items():
            assert c.energy_j == 50.0 and c.params["host_workers"] == readers[dev], name
    # Same device name on two hosts: two devices.
    b = cluster.Edge({"w1": _snap("h1", ["GPU-a"], 0.0), "w2": _snap("h2", ["GPU-a"], 0.0)})
    e = cluster.Edge({"w1": _snap("h1", ["GPU-a"], 5.0), "w2": _snap("h2", ["GPU-a"], 7.0)}, 1.0)
    comps, _ = cluster.components(src, b, e, 1.0)
    assert sorted(c.energy_j for c in comps) == [5.0, 7.0]


def test_without_nvml_process_shares_a_gpu_is_split_by_the_task_cpu_of_its_own_workers():
    src = cluster.RemoteSource()
    src.engine, src.client_id = "dask", "A"

    def snap(gpu, energy, tasks):
        s = _snap("h1", [gpu], energy, cpu_s=sum(tasks.values()))
        s.update(task_tracking="dask-thread-cpu", tasks_cpu_s=tasks)
        s["tasks_total_cpu_s"] = sum(tasks.values())
        return s

    b = cluster.Edge({"w1": snap("GPU-a", 0.0, {}), "w2": snap("GPU-b", 0.0, {})}, wall=0.0)
    e = cluster.Edge(
        {"w1": snap("GPU-a", 40.0, {"A": 1.0}), "w2": snap("GPU-b", 60.0, {"B": 1.0})}, wall=1.0
    )
    comps, _ = cluster.components(src, b, e, 1.0)
    gpus = {c.device: c for c in comps if c.kind == "gpu"}
    assert gpus["GPU-a"].params["share"] == 1.0 and gpus["GPU-a"].energy_j == 40.0
    assert gpus["GPU-b"].params["share"] == 0.0 and gpus["GPU-b"].energy_j == 0.0
    assert gpus["GPU-b"].params["gross_energy_j"] == 60.0
    assert all(g.params["attribution"] == "task-cpu-share" for g in gpus.values())


def _hold_begin_and_count_sends(src, monkeypatch) -> list:
    """Make the race of a window shorter than a round trip certain: every read of ``src`` is
    reported as not come back yet when looked at without waiting (a wait still collects the real
    answer). Returns the ``since_wall`` of each read sent (None: a begin, else an end)."""
    sent: list = []
    send = src.send

    def counting_send(since_wall=None):
        sent.append(since_wall)
        return send(since_wall) if since_wall is not None else send()

    monkeypatch.setattr(src, "send", counting_send)
    monkeypatch.setattr(src, "answered", lambda pending: False)
    return sent


def test_a_window_shorter_than_a_round_trip_is_below_the_clusters_resolution(attached, monkeypatch):
    """A window whose begin read has not come back at its end, short against the cluster's
    round trip: the end is not read (one round trip's wait, not two), the begin's answer is
    collected (so no late reply is left over), and each worker's components are there, 0 J,
    marked below resolution, with the reason; not a confident 0."""
    client, src = attached
    monkeypatch.setattr(cluster.LivePoller, "PERIOD_S", 3600.0)
    for _ in range(3):
        assert src.edge().error is None  # round trips the rule is judged against
    assert src.round_trip_s() is not None
    sent = _hold_begin_and_count_sends(src, monkeypatch)
    with carbonlab.track("short") as m:
        pass
    assert sent == [None]  # the begin only: no end read sent, none waited on
    remote = [c for c in m.components if c.location]
    assert {c.location["worker"] for c in remote} == set(_workers(client))
    assert {c.kind for c in remote} >= {"cpu", "ram", "gpu"}
    assert len([c for c in remote if c.kind == "gpu"]) == 1  # once per host, as always
    for c in remote:
        assert c.below_resolution and c.energy_j == 0.0, c
        # The window is shorter than the resolution it is said to be below (the rule's
        # threshold), whatever this begin's own round trip was.
        assert m.duration_s < c.params["resolution_s"] == src.resolution_s()
        assert c.params["round_trip_s"] > 0
        assert (
            "ended before the cluster's begin reading came back"
            in (c.params["below_resolution_reason"])
        )
        assert c.scope != cluster.SCOPE_TASKS  # no share told: nothing read at the end
    assert m.below_resolution and m.to_dict()["below_resolution"] is True
    (note,) = [n for n in m.notes if src.describe() in n]
    assert "not read at the window's end" in note and "below resolution" in note
    assert_clean("\n".join(m.notes))


def test_a_long_window_whose_begin_read_is_late_is_still_read_at_both_edges(attached, monkeypatch):
    """The rule is bounded by the window's duration: a window of real work (over
    SHORT_WINDOW_MAX_S) whose begin read had not been looked at is read at its end and charged
    its tasks, whatever the begin's round trip. (A guard: it passes without the rule too.)"""
    client, src = attached
    workers = _workers(client)
    for _ in range(3):
        src.edge()
    sent = _hold_begin_and_count_sends(src, monkeypatch)
    with carbonlab.track("long") as m:
        spent = client.submit(busy, 0.3, workers=[workers[0]], pure=False).result()
    assert m.duration_s > cluster.SHORT_WINDOW_MAX_S
    assert len(sent) == 2 and sent[0] is None and sent[1] is not None
    cpus = {c.location["worker"]: c for c in _remote(m, "cpu")}
    assert not any(c.below_resolution for c in cpus.values())
    assert cpus[workers[0]].energy_j == pytest.approx(spent * W_PER_CORE, rel=0.10)


@pytest.mark.fault("hardware")
def test_the_clusters_round_trip_is_judged_on_fully_answered_reads():
    """A read a hung worker held up for its timeout does not count as the cluster's round
    trip; with none seen yet the rule never applies; it is bounded by SHORT_WINDOW_MAX_S."""
    src = cluster.RemoteSource()
    assert src.round_trip_s() is None and not src.below_resolution(0.0)
    ok, hung = {"ok": True}, {"ok": False, "unanswered": True}
    src.sample_round_trip(0.7, {"w1": ok, "w2": hung})
    assert src.round_trip_s() is None
    for rt in (0.002, 0.003, 0.004):
        src.sample_round_trip(rt, {"w1": ok, "w2": ok})
    assert src.round_trip_s() == 0.003
    assert src.below_resolution(0.005) and not src.below_resolution(0.007)
    for _ in range(cluster.ROUND_TRIP_SAMPLES):
        src.sample_round_trip(1.0, {"w1": ok})  # a far cluster: still capped
    assert not src.below_resolution(cluster.SHORT_WINDOW_MAX_S)


def test_below_resolution_components_count_host_devices_once_and_name_unread_workers():
    src = cluster.RemoteSource()
    src.engine = "dask"
    b = cluster.Edge(
        {
            "w1": _snap("h1", ["GPU-a"], 1.0),
            "w2": _snap("h1", ["GPU-a"], 1.0),
            "w3": {"ok": False, "unanswered": True, "error": "no answer within 0.7 s"},
        },
        wall=0.0,
        round_trip_s=0.7,
    )
    comps, notes = cluster.below_resolution_components(src, b, 0.0001)
    (gpu,) = comps
    assert gpu.location["worker"] == "w1" and gpu.params["counted_once_per_host"] is True
    assert gpu.below_resolution and gpu.energy_j == 0.0 and gpu.params["round_trip_s"] == 0.7
    assert gpu.params["resolution_s"] == 0.7  # no usual round trip seen: the begin's
    assert any("w3" in n and "no answer within 0.7 s" in n for n in notes), notes
