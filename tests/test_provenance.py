"""What a run records about where it came from: the command line and its directory, MLflow's user
and source tags, bench's git commit, the machine, and the versions of PRUNE's LP solvers (a
review found none of them recorded)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bench
from bench.core.options import command_line, set_command_line
from bench.track.provenance import bench_git_commit, provenance_tags


def test_the_command_line_is_kept_shell_quoted():
    set_command_line(["run", "-m", "prune,sisa", "-f", "indices:my file.txt"])
    try:
        assert command_line() == "bench run -m prune,sisa -f 'indices:my file.txt'"
        tags = provenance_tags()
        assert tags["bench.command"] == command_line() and tags["bench.cwd"] == str(Path.cwd())
        assert tags["mlflow.source.name"] == "bench" and tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    finally:
        set_command_line([])
    assert command_line() is None and "bench.command" not in provenance_tags()


def test_the_cli_records_the_arguments_it_was_given_for_that_command_only(invoke_bench):
    import click

    from bench.cli import main

    seen = []
    probe = click.Command("probe-command-line", callback=lambda x: seen.append(command_line()), params=[
        click.Option(["-x"])])
    main.add_command(probe)
    try:
        assert invoke_bench("probe-command-line", "-x", "a b").returncode == 0
    finally:
        main.commands.pop("probe-command-line")
    assert seen == ["bench probe-command-line -x 'a b'"]
    assert command_line() is None  # not left for a later run in the same process (it would record this one)


@pytest.mark.skipif(not (Path(bench.__file__).resolve().parents[1] / ".git").exists(), reason="bench is not a git checkout")
def test_bench_s_git_commit_is_recorded_from_a_checkout():
    commit, dirty = bench_git_commit()
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool)
    tags = provenance_tags()
    assert tags["mlflow.source.git.commit"] == commit and (tags.get("bench.git_dirty") == "true") == dirty


def test_versions_hold_the_lp_solvers_and_the_machine():
    from bench.run.trained_with import NUMERIC_PACKAGES
    from bench.track.provenance import package_versions

    versions = package_versions()
    assert {"scipy", "highspy", "host.platform", "host.machine", "host.cpus"} <= set(versions), versions
    # the kernel level and torch's build label (the metadata's "2.14.1" hid "+cu130"; found in review)
    import torch

    assert versions["host.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert versions["torch.build"] == torch.__version__ and versions["torch"] == torch.__version__.split("+")[0]
    assert versions.get("host.cpu", "x")  # the model name where the system tells it
    assert {"scipy", "highspy"} <= set(NUMERIC_PACKAGES)  # in each trial's code identity too


@pytest.mark.slow
def test_a_run_s_parent_records_its_command_line(tmp_path, invoke_bench):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["run", "-m", "retrain", "--attacks", "", "--executor", "local", "-r", "epochs=2",
            "--cache-dir", str(tmp_path / "cache"), "--tracking-uri", uri]
    res = invoke_bench(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    client = mlflow.tracking.MlflowClient(uri)
    parents = [r for r in client.search_runs([client.get_experiment_by_name("unlearning-bench").experiment_id])
               if r.data.tags.get("bench.role") == "parent"]
    tags, params = parents[0].data.tags, parents[0].data.params
    assert tags["bench.command"] == "bench run -m retrain --attacks '' --executor local -r epochs=2 --cache-dir " \
        f"{tmp_path / 'cache'} --tracking-uri {uri}", tags
    assert tags["bench.cwd"] == str(tmp_path) and tags["mlflow.user"]
    assert params["versions.scipy"] and params["versions.host.cpus"], params


@pytest.mark.slow  # a bench run in process
def test_each_trial_records_the_architecture_its_model_spec_built(tmp_path, run_harness, trial_runs):
    """``--model mlp`` resolves its widths inside create(): the trial records the class, the
    parameter counts and a digest of the layout, so two specs of one architecture read alike and
    another width reads apart; not in the trial key (the model's code is in measured_with)."""
    code, out = run_harness(tmp_path, methods="ft", models=["mlp", "mlp:256,256", "mlp:32"], attacks=[],
                            recipe={"epochs": 1})
    assert code == 0, out
    runs = trial_runs(tmp_path)
    by_model = {r["params.model"]: r for _, r in runs.iterrows()}
    default, explicit, small = by_model["mlp"], by_model["mlp:256,256"], by_model["mlp:32"]
    assert default["params.architecture.class"] == "bench.nn.nets.MLP"
    assert default["params.architecture.parameters"] == str(64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10)
    assert small["params.architecture.parameters"] == str(64 * 32 + 32 + 32 * 10 + 10)
    assert default["params.architecture.trainable"] == default["params.architecture.parameters"]
    assert default["params.architecture.layout_sha256"] == explicit["params.architecture.layout_sha256"]
    assert default["params.architecture.layout_sha256"] != small["params.architecture.layout_sha256"]
    assert default["params.trial_key"] != explicit["params.trial_key"]  # the spec text is in the key, as before
