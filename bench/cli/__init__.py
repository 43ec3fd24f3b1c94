"""The ``bench`` command line. Subcommands live one per module; none imports torch, ray or
mlflow at start-up, so ``bench --help`` and argument errors answer at once."""

from __future__ import annotations

import click

from bench import __version__
from bench.core.errors import BenchError


class BenchGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unlearning-bench")
def main():
    """Benchmark machine-unlearning methods: same model, same forget request, same metrics, in MLflow."""


from bench.cli import compare_cmd, list_cmd, plugins_cmd, presets_cmd, run_cmd, tune_cmd, ui_cmd  # noqa: E402

main.add_command(run_cmd.run)
main.add_command(tune_cmd.tune)
main.add_command(plugins_cmd.plugins)
main.add_command(list_cmd.list_)
main.add_command(compare_cmd.compare)
main.add_command(ui_cmd.ui)
main.add_command(presets_cmd.presets)
