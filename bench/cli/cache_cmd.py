"""``bench cache``: list the reference cache, and prune what this bench can never reuse."""

from __future__ import annotations

import math
import os
import sys
from datetime import datetime

import click

CACHE_DIR = click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                         help="Reference-model cache. [default: ~/.cache/unlearning-bench, or $XDG_CACHE_HOME/unlearning-bench]")


def _root(cache_dir: str | None):
    """The cache directory (absolute), or None when it does not exist: said in one line; a
    directory given by name that does not exist is bad input (a typo), the default one is not."""
    from pathlib import Path

    from bench.core.cache import default_cache_dir
    from bench.core.errors import BenchError

    root = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()).absolute()
    if cache_dir is not None and not cache_dir.strip():
        raise BenchError("Empty --cache-dir: expected a directory; drop it for the default cache.")
    if root.is_dir():
        return root
    if cache_dir is not None:
        raise BenchError(f"--cache-dir {cache_dir}: no such directory. Pass the --cache-dir that bench run used.")
    click.echo(f"no reference cache yet at {root}: bench run creates it.", err=True)
    return None


def _shown(name: str) -> str:
    """A folder of the cache as listed ("quarantine/"); the foreign files and unfinished writes as named."""
    from bench.run import cache_admin as admin

    return name if name in ("foreign", admin.PARTIAL) else f"{name}/"


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M") if seconds else "?"


def _given(cache_dir: str | None) -> str | None:
    """The subcommand's --cache-dir, else the group's (``bench cache --cache-dir DIR prune``: it
    pruned the default cache, not DIR)."""
    if cache_dir is not None:
        return cache_dir
    ctx = click.get_current_context()
    return ctx.parent.params.get("cache_dir") if ctx.parent is not None else None


AS_JSON = click.option("--json", "as_json", is_flag=True, help="List as one JSON document on stdout.")
VERIFY = click.option("--verify", is_flag=True, help="Hash every weights file, as a run does (slow on a large "
                      "cache); without it their sizes are checked.")


@click.group(invoke_without_command=True)
@CACHE_DIR
@AS_JSON
@VERIFY
@click.pass_context
def cache(ctx, cache_dir, as_json, verify):
    """List the reference cache (the default, also `bench cache list`); `bench cache prune` removes
    what this bench can never reuse.

    \b
    Examples:
      bench cache
      bench cache --json
      bench cache list --verify
      bench cache prune --dry-run
      bench cache prune --unused-days 30 --ray-results
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_entries, cache_dir=cache_dir, as_json=as_json, verify=verify)
    elif ctx.invoked_subcommand != "list" and (as_json or verify):
        from bench.core.errors import BenchError

        flags = [f for f, on in (("--json", as_json), ("--verify", verify)) if on]
        shown, words = " ".join(flags), " and ".join(flags)
        raise BenchError(f"bench cache {shown} {ctx.invoked_subcommand}: {words} "
                         f"{'belongs' if len(flags) == 1 else 'belong'} to the listing; drop "
                         f"{'it' if len(flags) == 1 else 'them'}, or list the cache with: bench cache {shown}")


@cache.command("list")
@CACHE_DIR
@AS_JSON
@VERIFY
def list_entries(cache_dir, as_json, verify):
    """Every entry: kind, dataset / model / seed, size, when made and last used, and whether this
    bench can reuse it (ok), never hits it again (stale: other training code or torch) or refuses it
    (corrupt); then the quarantine, Ray Tune's run folders, the lock files, MLflow's store template
    and foreign files."""
    from bench.run import cache_admin as admin

    group = click.get_current_context().parent  # `bench cache --json list`: the group's flags count
    if group is not None and group.command.name == "cache":
        as_json = as_json or bool(group.params.get("as_json"))
        verify = verify or bool(group.params.get("verify"))
    root = _root(_given(cache_dir))
    if root is None:
        return
    entries, extras = admin.scan(root, verify=verify)
    if as_json:
        click.echo(admin.as_json(entries, extras))
        return
    stale = [e for e in entries if e.stale or e.corrupt]
    click.echo(f"reference cache {root}: {len(entries)} entries, {admin.megabytes(sum(e.bytes for e in entries))} "
               f"({len(stale)} that this bench can never reuse, {admin.megabytes(sum(e.bytes for e in stale))}); "
               + "; ".join(f"{_shown(name)} {n} {'file(s)' if name in ('foreign', admin.PARTIAL) else 'item(s)'}, "
                           f"{admin.megabytes(b)}" for name, (n, b) in extras.items()))
    if entries:
        width = max(len("dataset / model / seed"), *(len(e.setting) for e in entries))
        kind = max(len("kind"), *(len(e.kind) for e in entries))
        click.echo(f"  {'key':<12}  {'kind':<{kind}}  {'dataset / model / seed':<{width}}  {'size':>9}  {'last used':<16}  status")
        for e in entries:
            status = "ok" if not (e.stale or e.corrupt) else f"stale: {e.stale}" if e.stale else f"corrupt: {e.corrupt}"
            click.echo(f"  {e.key[:12]:<12}  {e.kind:<{kind}}  {e.setting:<{width}}  {admin.megabytes(e.bytes):>9}  "
                       f"{_day(e.last_used):<16}  {status}")
    for name in admin.FOLDERS:  # a file where a folder belongs stops the runs that need it (diff review, 2026-12-07)
        if (root / name).exists() and not (root / name).is_dir():
            click.echo(f"warning: {root / name} is a file, not a folder: runs that need {name}/ stop there; remove it")
    if stale or extras["quarantine"][0] or extras[admin.PARTIAL][0]:
        click.echo("remove what this bench can never reuse: bench cache prune (--dry-run lists it first)")
    if extras["foreign"][0]:
        click.echo(f"{extras['foreign'][0]} file(s) in {root} are not cache entries: bench cache leaves them alone")


@cache.command("prune")
@CACHE_DIR
@click.option("--unused-days", type=float, default=None, metavar="DAYS",
              help="Also remove entries no run has used for DAYS days (they are trained again when needed).")
@click.option("--ray-results", is_flag=True,
              help="Also remove Ray Tune's run folders and logs (ray_results/; MLflow keeps the results and tracebacks), "
                   "but those changed in the last hour.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def prune(cache_dir, unused_days, ray_results, dry_run):
    """Remove the entries this bench can never reuse (stale: trained by other bench training code or
    another torch; corrupt) and the quarantine. Another installation sharing the directory may still
    use stale entries: prune from the newest one. An entry a run holds is kept, and each is decided
    again under its lock; files that are not entries are never touched."""
    from bench.core.errors import BenchError
    from bench.run import cache_admin as admin

    if unused_days is not None and (not math.isfinite(unused_days) or unused_days < 0):
        raise BenchError(f"Bad --unused-days {unused_days}: expected a number of days >= 0, e.g. --unused-days 30.")
    root = _root(_given(cache_dir))
    if root is None:
        return
    if not os.access(root, os.W_OK):
        raise BenchError(f"Cannot prune {root}: it is not writable by this user.")
    entries, extras = admin.scan(root)
    chosen, rule = admin.select(entries, unused_days)
    folders = ("quarantine", admin.PARTIAL, "ray_results") if ray_results else ("quarantine", admin.PARTIAL)
    verb = "would remove" if dry_run else "removing"

    def reason(e) -> str:
        return e.stale or (f"corrupt: {e.corrupt}" if e.corrupt else f"unused since {_day(e.last_used)}")

    for e in chosen if dry_run else ():  # a removal is said once done: "removing X" then "kept X" (cache audit)
        click.echo(f"{verb} {e.key[:12]} {e.kind} {e.setting} ({admin.megabytes(e.bytes)}): {reason(e)}")
    items = []
    for name in folders:
        some = admin.folder_items(root, name)
        items += some
        if some:
            click.echo(f"{verb} {_shown(name)}: {len(some)} item(s), {admin.megabytes(sum(admin.size(p) for p in some))}")
        if len(some) < extras[name][0]:
            click.echo(f"keeping {extras[name][0] - len(some)} item(s) of {_shown(name)} changed in the last hour (a run "
                       f"may be writing them)")
    total = sum(e.bytes for e in chosen) + sum(admin.size(p) for p in items)
    if dry_run:
        click.echo(f"dry run: {admin.megabytes(total)} would be freed; nothing removed.")
        return
    freed, failed, removed = 0, 0, 0
    for e in chosen:
        why = admin.remove_entry(root, e.key, rule)
        if why is None:
            freed += e.bytes
            removed += 1
            click.echo(f"removed {e.key[:12]} {e.kind} {e.setting} ({admin.megabytes(e.bytes)}): {reason(e)}")
        else:
            click.echo(f"kept {e.key[:12]} {e.kind} {e.setting}: {why}")
    for item in items:
        nbytes, problem = admin.size(item), admin.remove_item(item)
        if problem is None:
            freed += nbytes
        else:
            failed += 1
            click.echo(f"could not remove {item}: {problem}")
    kept = len(entries) - removed
    click.echo(f"freed {admin.megabytes(freed)}; {kept} entr{'y' if kept == 1 else 'ies'} kept."
               + (f" {failed} item(s) could not be removed (above)." if failed else ""))
    if failed:
        sys.exit(1)
