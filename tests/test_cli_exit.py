"""The ``bench`` console script ends its process without the interpreter's module teardown
(``bench.cli.entry``), after doing what a normal exit does first."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import __version__


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_entry_joins_threads_runs_atexit_and_flushes_before_it_exits():
    done = _python(
        "import atexit, sys, threading, time\n"
        "from bench.cli import entry\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
        "sys.argv = ['bench', '--version']\n"
        "entry()\n"
        "print('not reached')\n"
    )
    assert done.returncode == 0, done.stderr
    # stdout is a pipe (block-buffered): every line reaches it only if the streams are flushed
    assert done.stdout.splitlines() == [f"unlearning-bench, version {__version__}", "thread done", "atexit ran"]


def test_entry_keeps_the_exit_status_of_bad_input():
    done = _python("import sys\nfrom bench.cli import entry\nsys.argv = ['bench', 'run', '--seeds', 'x']\nentry()\n")
    assert done.returncode == 2
    assert "Error" in done.stderr and "Traceback" not in done.stderr


def test_a_ctrl_c_outside_a_commands_handling_is_one_line_and_130():
    """Click's parsing, or a second Ctrl-C in a run's clean-up: a raw traceback and status -2 (SIGINT's
    default) before (found in review)."""
    done = _python("import sys\nimport bench.cli as cli\n"
                   "def interrupted(*a, **k):\n    raise KeyboardInterrupt\n"
                   "cli.main.main = interrupted\nsys.argv = ['bench', 'run']\ncli.entry()\n")
    assert (done.returncode, done.stderr) == (130, "Interrupted.\n"), done.stderr


def test_a_ctrl_c_in_the_atexit_handlers_changes_nothing():
    """After the command's last line: "Exception ignored in atexit callback" and a traceback (found in
    review). The handlers run on and the status stays."""
    done = _python(
        "import atexit, os, signal, sys\nfrom bench.cli import entry\n"
        "atexit.register(lambda: print('second handler ran'))\n"
        "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), os.kill(os.getpid(), signal.SIGTERM),\n"
        "                         os.kill(os.getpid(), signal.SIGHUP)))\n"
        "sys.argv = ['bench', '--version']\nentry()\n"
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines()[-1] == "second handler ran", done.stdout


def test_a_stop_while_the_process_waits_for_threads_ends_it_with_the_commands_status():
    """After the command, while other threads end: a SIGTERM killed the process by the signal (status
    -15 after `bench tune`'s last line, everything recorded; found in review). Now it ends at once
    with the command's own status."""
    done = _python(
        "import os, signal, sys, threading, time\nfrom bench.cli import entry\n"
        "threading.Thread(target=lambda: time.sleep(30)).start()\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()\n"
        "sys.argv = ['bench', 'run', '--seeds', 'x']\nentry()\n"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr  # bad input's 2, well before 30 s


def test_exit_codes_follow_sys_exit():
    for code, status, err in (("None", 0, ""), ("3", 3, ""), ("256", 0, ""), ("-1", 255, ""), ("'boom'", 1, "boom\n")):
        done = _python(f"import os\nfrom bench.cli import finish_process\nos._exit(finish_process({code}))\n")
        assert (done.returncode, done.stderr) == (status, err), code


def test_idle_thread_pool_workers_do_not_keep_the_process_alive():
    """A ThreadPoolExecutor left open (MLflow's artifact download leaves one after a failed
    download: `bench run --params RUN_ID` without best_params.json hung after its error line) ends
    with the process, as at a normal exit: threading's exit hooks wake its idle workers."""
    done = _python("import os\nfrom concurrent.futures import ThreadPoolExecutor\n"
                   "pool = ThreadPoolExecutor(2)\nassert pool.submit(lambda: 7).result() == 7\n"
                   "from bench.cli import finish_process\nos._exit(finish_process(3))\n")
    assert done.returncode == 3, done.stderr


def test_click_usage_errors_are_one_line_naming_the_help(invoke_bench, tmp_path):
    """click printed "Usage: ...", "Try 'bench run --help' for help." and the error: three lines where
    every other refusal is one (found in review)."""
    for args, said in ((["run", "--executor", "dask"], "Error: Invalid value for '--executor': 'dask' is not one of "
                                                       "'ray', 'local'. See 'bench run --help'."),
                       (["run", "--bogus"], "Error: No such option '--bogus'."),
                       (["run", "--methods"], "Error: Option '--methods' requires an argument. See 'bench run --help'."),
                       (["runn"], "Error: No such command 'runn'. Did you mean 'run'? See 'bench --help'."),
                       (["list"], "Error: Missing argument '{attacks|datasets|methods|models}'. Choose from: attacks, "
                                  "datasets, methods, models. See 'bench list --help'."),
                       # no match: exit 0 until 2026-12-06, where `bench run -m 'zz*'` exits 2
                       (["list", "methods", "zz*"], "Error: No methods match 'zz*'. `bench list methods` lists them.")):
        proc = invoke_bench(*args, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
        assert proc.stderr.startswith(said), proc.stderr


def test_a_thread_that_never_ends_is_said_and_does_not_hold_the_process():
    """A plugin's non-daemon thread that never ends kept `bench run --executor local` from exiting
    after its results were recorded (found in review); a pool's idle workers are not waited for."""
    done = _python(
        "import atexit, sys, threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import bench.cli as cli\n"
        "from bench.cli import entry\n"
        "cli.LINGER_SECONDS = 0.5\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=lambda: time.sleep(1e6), name='plugin-forever').start()\n"
        "ThreadPoolExecutor(2, thread_name_prefix='Mlflow').submit(print, 'pooled')\n"
        "sys.argv = ['bench', '--version']\n"
        "entry()\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "atexit ran", done.stdout
    assert "warning: 1 thread(s) still running 0.5 s after the command ended ('plugin-forever')" in done.stderr


def test_the_console_script_starts_in_bench_main_and_python_m_bench_works():
    """The console script's module imports nothing but the standard library before it handles
    stops; ``python -m bench`` is the same command."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "bench"]
    assert script.value == "bench.__main__:entry"
    done = _python("import sys\nimport bench.__main__\n"
                   "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
                   "('pluggy', 'click', 'torch', 'importlib_metadata', 'email')))\n")
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    version = subprocess.run([sys.executable, "-m", "bench", "--version"], capture_output=True, text=True, timeout=120)
    assert (version.returncode, version.stdout) == (0, f"unlearning-bench, version {__version__}\n"), version.stderr


def test_a_ctrl_c_while_the_command_line_imports_is_one_line_and_130():
    """In the first 0.1 s (``bench.cli`` and click importing) a Ctrl-C was a raw traceback and status
    -2 (found in review, 2026-12-07)."""
    done = _python(
        "import sys\n"
        "class Interrupting:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bench.cli':\n            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        "from bench.__main__ import entry\nsys.argv = ['bench', 'compare']\nentry()\n")
    assert (done.returncode, done.stderr) == (130, "Interrupted.\n"), done.stderr


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_every_command_as_ctrl_c_does(stop):
    """``bench compare`` and ``bench cache`` died by the signal (status -15 / -1, no word) where run
    and tune exit 130 (found in review, 2026-12-07)."""
    done = _python(
        "import os, signal, sys, time\nimport bench.cli as cli\n"
        "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"  # the suite may run under nohup (bench keeps an ignored SIGHUP)
        f"def command(*a, **k):\n    os.kill(os.getpid(), signal.{stop})\n    time.sleep(30)\n"
        "cli.compare_cmd.compare.callback = command\n"
        "from bench.__main__ import entry\nsys.argv = ['bench', 'compare']\nentry()\n")
    assert (done.returncode, done.stderr) == (130, "Interrupted.\n"), done.stderr


def test_a_hang_up_moves_the_terminal_streams_to_dev_null_and_keeps_files_and_pipes():
    """After a hang-up, a write to the terminal fails (EIO): the clean-up that follows (marking the
    runs, Ray's shutdown) must not fail on its lines. A stream redirected to a file keeps it."""
    done = _python(
        "import os, pty, sys\n"
        "from bench.core.stops import leave_hung_up_terminal\n"
        "master, slave = pty.openpty()\n"
        "os.dup2(slave, 0)\nos.dup2(slave, 2)\n"  # stdin and stderr a terminal, stdout the pipe
        "before = os.fstat(1)\nleave_hung_up_terminal()\n"
        "null = os.stat(os.devnull).st_rdev\n"
        "after = [os.fstat(fd) for fd in (0, 1, 2)]\n"
        "print(after[0].st_rdev == null, after[2].st_rdev == null, after[1].st_ino == before.st_ino)\n")
    assert done.stdout.strip() == "True True True", done.stdout + done.stderr


@pytest.mark.parametrize("status", [0, 1])
def test_a_stop_after_the_outcome_is_recorded_keeps_the_commands_status(status):
    """A SIGTERM just after `bench tune`'s last line (the search FINISHED, its best written) gave
    "Interrupted." and 130, or death by the signal (found in review, 2026-12-07): a scheduler would
    run a complete job again. Once a command's outcome is recorded its status stands."""
    done = _python(
        "import os, signal, sys\nimport bench.cli as cli\nimport bench.core.options as options\n"
        "real = options.set_command_line\n"
        "def set_command_line(args):\n    real(args)\n"
        "    if not args:  # the command has returned: click's and bench's way out\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "options.set_command_line = set_command_line\n"
        f"cli.run_cmd._run = lambda params_file, kw: {status}\n"
        "from bench.__main__ import entry\nsys.argv = ['bench', 'run']\nentry()\n")
    assert (done.returncode, done.stderr) == (status, ""), done.stderr


def test_a_sighup_ignored_from_the_start_stays_ignored():
    """`nohup bench run ... &` keeps a job alive past a logout: bench took the SIGHUP as a stop and
    ended such a run at the logout (130, parent KILLED; found in review, 2026-12-07)."""
    done = _python("import signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
                   "from bench.core.stops import sigterm_as_interrupt\nreplaced = sigterm_as_interrupt()\n"
                   "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, signal.SIGTERM in replaced)\n")
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr


def test_output_that_cannot_be_written_stops_nothing():
    """A closed pipe (`bench run | head`, a `| tee` killed with the terminal) or a hung-up terminal
    made a progress line raise: a run FAILED with exit 1 and no word, a sample's run left RUNNING
    (found in review, 2026-12-07). The stream goes to /dev/null and the command goes on."""
    code = ("import sys, time\nfrom bench.core.stops import outlast_closed_output\noutlast_closed_output()\n"
            "time.sleep(0.5)\n"  # the reader has closed the pipe by now
            "for i in range(20000):\n    print('line', i)\nsys.stdout.flush()\n"
            "sys.stderr.write('went on\\n')\nsys.stderr.flush()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and err == "went on\n", err
