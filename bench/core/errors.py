"""Errors the harness reports to the user as a message, without a traceback."""

from __future__ import annotations


class BenchError(Exception):
    """Bad input or configuration: the message says what was wrong and what to do."""


class DataFilesMissing(BenchError):
    """A dataset's files are not (yet) where its plugin reads them, and the message says where to
    put them: ``bench run`` stops with it (exit status 2) like any BenchError, while ``bench run
    --dry-run`` reports the dataset as not ready and still exits 0. Only for files the user must
    still place or download; a bad spec, an explicit path that does not exist or a corrupt file
    is a plain BenchError, which the dry run refuses as the run does."""


class PluginError(BenchError):
    """A plugin registered something invalid, or two plugins registered the same name."""


class RecordError(Exception):
    """A measurement was made but could not be recorded (the tracking store refused a write): the
    run fails with this message (exit status 1), never reports success without its record."""


class no_exit:
    """``with no_exit("Method 'x' (unlearn)"):`` turns a plugin's ``sys.exit()`` into a BenchError
    that fails only what the plugin was doing: without it, ``--executor local`` ended the whole
    run there with the plugin's exit status (0 for ``sys.exit()``), the other trials never run."""

    def __init__(self, who: str) -> None:
        self.who = who

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, SystemExit):
            raise BenchError(f"{self.who} called sys.exit({exc.code!r}); a plugin must return, or raise an exception "
                             "to fail, never end the process.") from exc
        return False
