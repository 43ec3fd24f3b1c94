"""`bench run --ray-address` against a real Ray head started by the test on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

import mlflow
import psutil
import pytest

from bench.track.ui import stop_processes

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with its own port and temp dir, shared by the module's tests (each
    joins it with its own store); stopped by its own pids (not `ray stop`), killed after 2 s (its
    processes waited out the whole 15 s SIGTERM grace: 16 s a test)."""
    port = _free_port()
    # short: Ray's Unix socket paths live under it and must stay below ~107 characters
    temp_dir = tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_exe = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.run(
        [ray_exe, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        procs = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(temp_dir) in part for part in (p.info["cmdline"] or [])):
                    procs.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        stop_processes(procs, timeout=2)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def head_cache(tmp_path_factory):
    """One reference cache for the module's runs on the head: the second trains no reference."""
    return tmp_path_factory.mktemp("head-cache")


@pytest.mark.parametrize("given", ["flag", "RAY_ADDRESS"])
def test_run_joins_an_existing_cluster(ray_head, head_cache, workdir, run_bench, given):
    address, env = ray_head
    flag = ["--ray-address", address] if given == "flag" else []
    env = env if given == "flag" else {**env, "RAY_ADDRESS": address}  # Ray's own convention, as in `ray job submit`
    # --cpus-per-trial 2: one trial at a time on the head's 2 CPUs, one Tune worker to start
    methods = "ga,ft" if given == "flag" else "ga"  # the second way in: one trial is enough (CPU for the suite)
    proc = run_bench("run", "--methods", methods, "--attacks", "", "--cpus-per-trial", "2", *flag, "--cache-dir", str(head_cache),
                     "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}", cwd=workdir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"joined Ray cluster at {address}" in proc.stdout
    assert "started local Ray" not in proc.stdout
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["unlearning-bench"])
    kids = df[df["tags.bench.role"] == "trial"]
    assert sorted(kids["params.method"]) == sorted(methods.split(",")) and set(kids["status"]) == {"FINISHED"}
    # the job's workers got one malloc arena (Ray's runtime env): the delta holds the weights' gradients
    # and momentum (digits' MLP, 85,002 float32) as in bench's own Ray (tests/test_e2e_ray.py)
    assert (kids["metrics.memory_delta_mb"] >= 2 * 85_002 * 4 / 2**20).all(), kids["metrics.memory_delta_mb"]
    # the head is still up for other drivers: bench did not shut the cluster down
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3):
        pass


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to restrict the process to one")
def test_local_ray_gets_the_cpus_this_process_may_run_on():
    """Under ``taskset`` or a Slurm job's cpuset, bench's local Ray gets the CPUs of the process's
    affinity: Ray's own count ignores it and would place a trial per core of the whole machine on them."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from bench.run.executor import start_ray; start_ray(None, False, print); "
            "import ray; print('CPU', ray.cluster_resources()['CPU']); ray.shutdown()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "started local Ray on 127.0.0.1 with 1 CPUs" in proc.stdout
    assert "CPU 1.0" in proc.stdout


def test_a_cluster_file_left_by_ray_start_is_not_joined():
    """``ray start`` writes the head's address to ``<tmp>/ray/ray_current_cluster`` and leaves it
    after the head is gone; ``ray.init()`` without an address joins what it names and, given
    ``num_cpus``, raised a raw ValueError. bench's local Ray starts anyway."""
    temp_dir = tempfile.mkdtemp(prefix="bench-rc-", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        os.makedirs(os.path.join(temp_dir, "ray"))
        with open(os.path.join(temp_dir, "ray", "ray_current_cluster"), "w") as f:
            f.write(f"127.0.0.1:{_free_port()}")  # nothing listens there
        code = ("from bench.run.executor import start_ray; start_ray(None, False, print); "
                "import ray; print('CPU', ray.cluster_resources()['CPU']); ray.shutdown()")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**env, "RAY_TMPDIR": temp_dir})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "started local Ray on 127.0.0.1" in proc.stdout
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_clean_end_removes_the_local_rays_session_folder_and_a_failed_one_keeps_it():
    """Ray leaves every session's folder (logs, sockets: 2-8 MB) under /tmp/ray: 808 folders and
    387 MB here after a day of runs. bench removes the one of a local Ray it started when the run
    ended cleanly, and keeps it when the run did not (worker crash logs)."""
    temp_dir = tempfile.mkdtemp(prefix="bench-rs-", dir="/tmp")  # short: Ray's socket paths live under it
    code = ("import os, ray\n"
            "from bench.run.executor import start_ray\nfrom bench.run.ray_processes import stop_ray\n"
            "for clean in (True, False):\n"
            "    start_ray(None, False, lambda *a, **k: None, num_cpus=1)\n"
            "    session = ray._private.worker._global_node.get_session_dir_path()\n"
            "    ray.get(ray.remote(lambda: 1).remote())\n"
            "    stop_ray(clean)\n"
            "    print(clean, os.path.isdir(session))\n")
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**env, "RAY_TMPDIR": temp_dir})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.split("\n")[:2] == ["True False", "False True"], proc.stdout
        sessions = [p for p in os.listdir(os.path.join(temp_dir, "ray")) if p.startswith("session_2")]
        assert len(sessions) == 1, sessions  # the failed run's
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
