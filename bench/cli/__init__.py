"""The ``bench`` command line. Subcommands live one per module; none imports torch, ray or
mlflow at start-up, so ``bench --help`` and argument errors answer at once."""

from __future__ import annotations

import atexit
import os
import sys
import threading

import click

from bench import __version__
from bench.core.errors import BenchError, RecordError


class BenchGroup(click.Group):
    def main(self, args=None, *rest, **kwargs):
        from bench.core.stops import forget_status
        from bench.core.options import set_command_line

        set_command_line(sys.argv[1:] if args is None else list(args))  # recorded with the run (Tag.COMMAND)
        forget_status()
        try:
            return super().main(args, *rest, **kwargs)
        finally:  # in one process (tests, a notebook), a later run() must not record this command
            set_command_line([])

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except RecordError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:  # before a run's own handling (planning, loading): 130, not click's 1
            ctx.exit(_interrupted())
        except click.UsageError as exc:  # one line, as every other refusal (click printed usage, a hint and the error)
            sub = ctx.invoked_subcommand  # click's option parser raises some without a context
            where = exc.ctx.command_path if exc.ctx is not None else " ".join(filter(None, (ctx.command_path, sub)))
            text = " ".join(exc.format_message().split())  # click's choice lists span lines
            click.echo(f"Error: {text}{'' if text.endswith(('.', '?')) else '.'} See '{where} --help'.", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unlearning-bench")
def main():
    """Benchmark machine-unlearning methods: same model, same forget request, same metrics, in MLflow."""


from bench.cli import cache_cmd, compare_cmd, list_cmd, plugins_cmd, presets_cmd, reproduce_cmd, run_cmd, tune_cmd, ui_cmd  # noqa: E402

main.add_command(run_cmd.run)
main.add_command(tune_cmd.tune)
main.add_command(plugins_cmd.plugins)
main.add_command(list_cmd.list_)
main.add_command(compare_cmd.compare)
main.add_command(ui_cmd.ui)
main.add_command(presets_cmd.presets)
main.add_command(reproduce_cmd.reproduce)
main.add_command(cache_cmd.cache)


def entry() -> None:
    """The ``bench`` console script: :func:`main`, then the process ends without the interpreter's
    teardown of the modules it loaded. That teardown writes nothing and took 0.5 s after importing
    torch and 1.6 s with Ray, Tune and mlflow too (measured, 2-core CPU), after the run's last line.
    Everything a normal exit does first is done first: non-daemon threads are joined, the atexit
    handlers run (logging, Ray, MLflow), the standard streams are flushed. A Ctrl-C outside a
    command's own handling (click's parsing; a second one in a run's clean-up) is "Interrupted." and
    exit status 130, as inside it (it was a raw traceback, found in review); any other exception than
    ``SystemExit`` propagates as usual."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = _interrupted()
    os._exit(finish_process(code))


def _interrupted() -> int:
    """The exit status of a command a Ctrl-C (SIGTERM, SIGHUP) stopped outside its own handling: 130
    and "Interrupted.", or, once its outcome is recorded, its own status, quietly."""
    from bench.core.stops import decided_status

    decided = decided_status()
    if decided is not None:
        return decided
    click.echo("Interrupted.", err=True)
    return 130


def _ignore_stops() -> None:
    """SIGINT, SIGTERM and SIGHUP ignored from here to the end of the process (main thread only)."""
    import signal

    from bench.core.stops import stop_signals

    if threading.current_thread() is threading.main_thread():
        for stop in stop_signals():
            signal.signal(stop, signal.SIG_IGN)


#: How long the process waits, after the command, for threads it did not start to end.
LINGER_SECONDS = 10.0


def _lingering_threads() -> list[threading.Thread]:
    """The non-daemon threads (thread pools' idle workers aside: threading's exit hooks end them)
    still running :data:`LINGER_SECONDS` after the command, each said in one warning line: a
    plugin's thread that never ends kept ``bench run --executor local`` from exiting after its
    results were recorded (found in review)."""
    import time

    pools = sys.modules.get("concurrent.futures.thread")
    pool_worker = getattr(pools, "_worker", None)  # the target of every pool's threads, whatever their names
    mine = threading.current_thread()
    waiting = [t for t in threading.enumerate()
               if t is not mine and not t.daemon and (pool_worker is None or getattr(t, "_target", None) is not pool_worker)]
    deadline = time.monotonic() + LINGER_SECONDS
    for thread in waiting:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t for t in waiting if t.is_alive()]
    if left:
        print(f"warning: {len(left)} thread(s) still running {LINGER_SECONDS:g} s after the command ended "
              f"({', '.join(repr(t.name) for t in left[:3])}): a plugin started them and never ended them; bench "
              f"exits without waiting for them.", file=sys.stderr)
    return left


def _join_threads() -> None:
    """Wait for the non-daemon threads, as the interpreter does at exit."""
    shutdown = getattr(threading, "_shutdown", None)
    if callable(shutdown) and threading.current_thread() is threading.main_thread():
        # what the interpreter does first at exit: threading's own exit hooks (concurrent.futures
        # wakes its idle pool workers there, MLflow's artifact downloads leave some), then it joins
        # every non-daemon thread; joining them without the hooks waits for those workers forever
        shutdown()
        return
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()


def finish_process(code) -> int:
    """What Python does at exit before its teardown; returns the exit status ``code`` stands for
    (``sys.exit`` semantics: None is 0, any other non-integer is printed to stderr and is 1)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    _stops_end_with(status & 0xFF)  # the wait for threads below stays stoppable, with the decided status
    if not _lingering_threads():  # one that never ends is said in a line: joining it would wait forever
        _join_threads()
    _ignore_stops()  # the status is decided: a Ctrl-C in an atexit handler was a traceback that changed nothing
    atexit._run_exitfuncs()
    _flush()
    return status & 0xFF  # what the OS keeps of it, as for sys.exit


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass


def _stops_end_with(status: int) -> None:
    """From here, Ctrl-C, SIGTERM or SIGHUP ends the process at once with ``status`` (the command's,
    already decided; its records are written): a SIGTERM just after `bench tune`'s last line, while
    the process waited for other threads, killed it by the signal (found in review). Main thread
    only."""
    import signal

    from bench.core.stops import stop_signals

    if threading.current_thread() is not threading.main_thread():
        return

    def end(signum, frame):
        _flush()
        os._exit(status)

    for stop in stop_signals():
        signal.signal(stop, end)
