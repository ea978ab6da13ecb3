"""The `edgerec` command line: a thin layer over the library.

The library raises EdgerecErrors; only this module turns them into one-line
messages and exit codes (1 other error, 2 bad input, 3 bad bundle, 4 device,
5 another writer is updating the bundle home).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import unicodedata
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import click

from . import __version__
from .encoder import MAX_TEXT_BYTES
from .errors import EdgerecError
from .recommender import (BUNDLE_ENV, DEFAULT_THREADS, Recommendation, Recommender, default_model_path,
                          resolve_bundle_path)

if TYPE_CHECKING:
    from .names import NameMatch

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if c not in (0x09,)}
# Line separators would break a one-line message; bidi overrides can make a terminal show text reordered.
_CONTROL.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def safe(text: object) -> str:
    """Text fit for a terminal: control characters (ESC, NUL, ...) are shown escaped, never sent raw."""
    return str(text).translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")


def _fail(message: str, code: int) -> "click.exceptions.Exit":
    click.echo(f"edgerec: error: {safe(message)}", err=True)
    return click.exceptions.Exit(code)


class _OneLineUsageError(click.UsageError):
    """A click usage error (bad option, missing argument) shown like every edgerec error: one line, exit 2."""

    def show(self, file: Any = None) -> None:
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"edgerec: error: {safe(self.format_message())}{hint}", file=file, err=file is None)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (_OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return exc  # bare `edgerec` prints the help, as it should
    return _OneLineUsageError(exc.format_message(), ctx=exc.ctx)


class _Group(click.Group):
    """Turns library errors into one line on stderr and the error's exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # options of the group itself, e.g. `edgerec --bogus`
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except EdgerecError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except (TypeError, ValueError) as exc:
            raise _fail(str(exc), 2) from None
        except BrokenPipeError:
            # `edgerec query ... | head -1`: the reader has all it wanted; the rest has no one to read it.
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except OSError as exc:
            raise _fail(f"{exc.filename or ''}: {exc.strerror or exc}", 1) from None
        except MemoryError:
            raise _fail("out of memory", 1) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - tokenizers' PanicException is a BaseException
            raise _fail(f"unexpected {type(exc).__name__}: {exc} (please report this)", 1) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not hit the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # not a real file (a test's runner): nothing will be flushed to a pipe


def bundle_option(f: Any) -> Any:
    return click.option(
        "--bundle", "bundle", envvar=BUNDLE_ENV, type=click.Path(), default=None,
        help=f"Bundle directory (default: ${BUNDLE_ENV}, else the bundle shipped with edgerec).",
    )(f)


def runtime_options(f: Any) -> Any:
    f = click.option("--where", "where", multiple=True, metavar="CLAUSE",
                     help="Only items whose metadata pass, e.g. 'year<=1998' or 'genres=Comedy|Drama' (one of); "
                          "operators = != < <= > >=; repeat it: all must hold.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one result per line.")(f)
    f = click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
                     help="How many results.")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, show_default=True,
                     help="ONNX Runtime threads; one is the fastest for a single query.")(f)
    f = click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                     help="Where the encoder runs; cuda needs onnxruntime-gpu.")(f)
    f = click.option("--ef", type=click.IntRange(min=1), default=None,
                     help="HNSW search breadth (default: the bundle's); higher finds more of the true top k, slower.")(f)
    return bundle_option(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgerec")
def main() -> None:
    """On-device recommendations from a compressed language model.

    \b
    Examples:
      edgerec query "a heist movie with a clever twist"
      edgerec similar "Matrix, The (1999)" -k 5
      edgerec recommend "Alien (1979)" "Blade Runner (1982)"
      edgerec build my_items.jsonl --out my_bundle
      edgerec init my_home --from my_bundle && edgerec add new_items.jsonl --bundle my_home
      edgerec info
    """


@main.command()
@click.argument("text")
@click.option("--encoder-only", is_flag=True,
              help="Answer with the encoder alone; the bundle's description model never takes part.")
@runtime_options
def query(text: str, encoder_only: bool, k: int, as_json: bool, where: tuple[str, ...], threads: int | None,
          device: str, ef: int | None, bundle: str | None) -> None:
    """Items matching TEXT (use - to read the text from stdin).

    The encoder's answer, with BM25 over the items' words fused in when the
    bundle has postings (README, "How a text query is read"); a bundle with a
    description model lets it take part in descriptions the encoder reads weakly.
    """
    text = _read_stdin_text() if text == "-" else _argv_text(text)
    rec = Recommender.load(bundle, threads=threads, device=device, ef=ef)
    results = rec.query(text, k=k, descriptions=not encoder_only, filter=_filter(where))
    known = rec.query_understood(text)
    if not known:
        click.echo("edgerec: note: the model knows no word of this query (emoji, symbols or a script it "
                   "lacks): the items below answer nothing in it", err=True)
    _print(results, as_json, where, extra={"understood": known})


@main.command()
@click.argument("item_id")
@runtime_options
def similar(item_id: str, k: int, as_json: bool, where: tuple[str, ...], threads: int | None, device: str,
            ef: int | None, bundle: str | None) -> None:
    """Items like ITEM_ID (an item id, or a title naming one item: see `edgerec items search`)."""
    rec = Recommender.load(bundle, threads=threads, device=device, ef=ef)
    _print(rec.similar(_argv_text(item_id), k=k, filter=_filter(where)), as_json, where)


@main.command()
@click.argument("history", nargs=-1, required=True)
@click.option("--include-seen", is_flag=True, help="Allow items of the history in the results.")
@click.option("--dislike", "disliked", multiple=True, metavar="ITEM_ID",
              help="An item the user turned down (repeatable): never answered, and the answer moves away from it.")
@click.option("--strategy", type=click.Choice(["exclude", "average", "best_score"]), default="exclude",
              show_default=True, help="What disliked items do besides never being answered: nothing (exclude), or "
                                      "move the answer away from them (average, best_score).")
@click.option("--prior", type=click.FloatRange(min=0, max=10), default=None,
              help="Weight of the bundle's item prior (popularity) for this call; 0 leaves it out "
                   "(default: the bundle's).")
@runtime_options
def recommend(history: Sequence[str], include_seen: bool, disliked: Sequence[str], strategy: str,
              prior: float | None, k: int, as_json: bool, where: tuple[str, ...], threads: int | None, device: str,
              ef: int | None, bundle: str | None) -> None:
    """Items for someone who liked HISTORY (item ids or titles naming one item, most recent last)."""
    rec = Recommender.load(bundle, threads=threads, device=device, ef=ef)
    history = [_argv_text(item) for item in history]
    disliked = [_argv_text(item) for item in disliked]
    _print(rec.recommend(history, k=k, exclude_seen=not include_seen, disliked=disliked, strategy=strategy,
                         prior=prior, filter=_filter(where)), as_json, where)


@main.group()
def items() -> None:
    """Look items up by name."""


@items.command("search")
@click.argument("text")
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one item per line.")
@bundle_option
def items_search(text: str, k: int, as_json: bool, bundle: str | None) -> None:
    """Items whose title or id is like TEXT: case, accents, articles ("The") and the year do not matter;
    exact names first, then prefixes, all words, typos. Each line: rank, how it matched, similarity."""
    from .bundle.reader import open_bundle
    from .encoder import clean_text
    from .items import ItemTable
    from .names import ItemNames

    # Only the item table is needed: no encoder or index to load.
    opened = open_bundle(resolve_bundle_path(bundle))
    table = ItemTable.load(opened.path("items"), opened.manifest.items)
    found = ItemNames(table).find(clean_text(_argv_text(text)), k)
    if as_json:
        for match in found:
            click.echo(json.dumps(match.to_dict(), ensure_ascii=True))
        return
    if not found:
        click.echo(f"edgerec: no item has a name like {safe(repr(text))}", err=True)
    rows = [[f"{rank:>3}", f"{match.match:<7}", f"{match.score:5.3f}"] for rank, match in enumerate(found, start=1)]
    for line in _table(rows, found):
        click.echo(line)


@main.command()
@click.argument("catalog", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(), help="Directory of the new bundle.")
@click.option("--text-fields", default=None,
              help="Comma-separated fields that make each item's text (default: every field holding words, "
                   "not the id, numbers or links; a rebuild of a home keeps the home's).")
@click.option("--id-field", default="id", show_default=True, help="Field holding each item's unique id.")
@click.option("--name", default=None, help="Bundle name (default: the --out directory's name).")
@click.option("--force", is_flag=True, help="Replace --out if it is an existing bundle.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads (default: all cores).")
@click.option("--ef", type=click.IntRange(min=1), default=None,
              help="The bundle's default HNSW search breadth (default: by catalogue size, 64 up to "
                   "5,000 items, 256 up to 100,000, 512 above).")
@click.option("--vectors", "vectors_dir", type=click.Path(), default=None,
              help="Directory of vector shards of CATALOG, encoded by the same model on Ray "
                   "(python -m edgerec.scale.encode_job): indexed instead of encoding again.")
@bundle_option
def build(catalog: str, out: str, text_fields: str | None, id_field: str, name: str | None, force: bool,
          threads: int | None, ef: int | None, vectors_dir: str | None, bundle: str | None) -> None:
    """Build a bundle for the items in CATALOG (.jsonl, .csv or .tsv; - reads JSON Lines from stdin).

    The encoder comes from --bundle (a bundle or a model); without it, from the general encoder shipped
    with edgerec (not the default MovieLens bundle, whose encoder is fitted to films)."""
    from .bundle.home import is_home
    from .scale.shards import VectorShards
    from .tools.progress import StageProgress
    from .update.build import build_from_catalog
    from .update.store import Store

    fields = [f.strip() for f in text_fields.split(",") if f.strip()] if text_fields else None

    if vectors_dir is not None and is_home(out):
        raise _fail(f"{out} is a bundle home; --vectors builds a new bundle directory: build into another --out", 2)
    if is_home(out):  # a rebuild: a new version in the home, switched to when complete
        with _catalog_file(catalog) as catalog, StageProgress() as progress:
            report = Store(out).rebuild(catalog, base=bundle, text_fields=fields, id_field=id_field, name=name,
                                        threads=threads, ef=ef, progress=progress)
        click.echo(f"wrote {safe(out)}/{report.version} (now current; previous {report.previous}): "
                   f"{report.count} items", err=True)
        return
    with _catalog_file(catalog) as catalog, StageProgress() as progress:
        manifest = build_from_catalog(
            catalog, out, base=bundle if bundle is not None else default_model_path(), text_fields=fields, id_field=id_field,
            name=name, threads=threads, ef=ef, overwrite=force, progress=progress,
            log=lambda line: click.echo(f"edgerec: {safe(line)}", err=True),
            vectors=None if vectors_dir is None else VectorShards(vectors_dir),
        )
    click.echo(f"wrote {safe(out)}: {manifest.items.count} items, text from {', '.join(manifest.items.text_fields)}",
               err=True)


@main.command()
@click.argument("home", type=click.Path())
@click.option("--from", "source", type=click.Path(), default=None,
              help="Bundle to start from (default: the bundle shipped with edgerec).")
def init(home: str, source: str | None) -> None:
    """Make HOME a bundle home (versioned, for `add`, `remove` and rebuilds) starting from a copy of --from."""
    from .update.store import Store

    store = Store.create(home, resolve_bundle_path(source))
    click.echo(f"made {safe(home)}: version {store.pointer().current}; "
               f"use it with --bundle {safe(home)} or {BUNDLE_ENV}", err=True)


def _report(home: str, report: Any) -> None:
    click.echo(f"{safe(home)}: version {report.version} is current (previous {report.previous}): "
               f"{report.count} items; {report.added} added, {report.replaced} replaced, {report.removed} removed, "
               f"{report.encoded} encoded", err=True)


@main.command()
@click.argument("catalog", type=click.Path())
@click.option("--id-field", default=None, help="Field holding each item's id (default: the bundle's).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads (default: all cores).")
@bundle_option
def add(catalog: str, id_field: str | None, threads: int | None, bundle: str | None) -> None:
    """Add or replace the items of CATALOG (.jsonl, .csv or .tsv; - reads JSON Lines from stdin) in the
    bundle home --bundle.

    \b
    Items whose id is new are added; items whose id exists replace the old
    record. Only new and changed texts are encoded. The update is written as a
    new version and switched to atomically; a killed update leaves the old one.
    """
    from .tools.progress import StageProgress
    from .update.store import Store

    home = str(resolve_bundle_path(bundle))
    with _catalog_file(catalog) as catalog, StageProgress() as progress:
        report = Store(home).add(catalog, id_field=id_field, threads=threads, progress=progress)
    _report(home, report)


@main.command()
@click.argument("item_ids", nargs=-1, required=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads (default: all cores).")
@bundle_option
def remove(item_ids: Sequence[str], threads: int | None, bundle: str | None) -> None:
    """Remove ITEM_IDS from the bundle home --bundle (all must exist; nothing is removed otherwise)."""
    from .update.store import Store

    home = str(resolve_bundle_path(bundle))
    _report(home, Store(home).remove(list(item_ids), threads=threads))


@main.command()
@click.argument("events", type=click.Path())
@click.option("--user-field", default="user", show_default=True, help="Column naming the user.")
@click.option("--item-field", default="item", show_default=True, help="Column naming the item (its id).")
@click.option("--time-field", default="timestamp", show_default=True,
              help="Column with the time (Unix seconds or an ISO 8601 date).")
@click.option("--rating-field", default=None, help="Column with a rating (for --min-rating).")
@click.option("--min-rating", type=float, default=None, help="Leave out events rated below this.")
@click.option("--half-life-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Count an event this many days older than the newest at half weight (default: all count 1).")
@click.option("--weight", type=click.FloatRange(min=0, max=10), default=None,
              help="The prior's weight in recommend (default: the bundle's, else 0.2).")
@bundle_option
def prior(events: str, user_field: str, item_field: str, time_field: str, rating_field: str | None,
          min_rating: float | None, half_life_days: float | None, weight: float | None, bundle: str | None) -> None:
    """Count EVENTS (.csv, .tsv or .jsonl: user, item, time) into the item prior of the bundle home --bundle.

    
    recommend then adds weight x log(1 + count) / log(1 + largest count) to each
    item's similarity: what your own users choose now, without exporting again.
    Written as a new version of the home and switched to atomically.
    """
    from .events import EventColumns
    from .update.store import Store

    home = str(resolve_bundle_path(bundle))
    columns = EventColumns(user=user_field, item=item_field, timestamp=time_field, rating=rating_field)
    report = Store(home).set_prior(events, columns=columns, min_rating=min_rating, half_life_days=half_life_days,
                                   weight=weight)
    read = report.events
    click.echo(f"{safe(home)}: version {report.version} is current (previous {report.previous}): item prior of "
               f"{read.kept:,} events from {read.users:,} users, weight {report.weight:g} "
               f"({read.unknown_items:,} events of unknown items and {read.below_min_rating:,} below --min-rating "
               "left out)", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and providers as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="List the whole provenance, one entry a line.")
@bundle_option
def info(as_json: bool, verbose: bool, bundle: str | None) -> None:
    """What the bundle (or model) is: files, model, index, available providers, and how it was made
    (the provenance: summed up; all of it with --verbose or --json)."""
    from .bundle.reader import open_bundle
    from .encoder import available_providers

    opened = open_bundle(resolve_bundle_path(bundle), model_ok=True)
    manifest = opened.manifest
    providers = available_providers()
    if as_json:
        body = json.loads(manifest.to_json())
        home = {"home": str(opened.home), "version": opened.version} if opened.home else {}
        click.echo(json.dumps({"path": str(opened.root), **home, "manifest": body, "providers": providers}))
        return
    lines = [
        f"{'model' if manifest.is_model else 'bundle':<12}{safe(manifest.name)}  ({safe(opened.root)})",
        *([f"home        {safe(opened.home)}  (version {opened.version})"] if opened.home else []),
        f"format      {manifest.format} v{manifest.schema_version}",
        *([] if manifest.items is None else
          [f"items       {manifest.items.count}  (text: {', '.join(manifest.items.text_fields)})"]),
        f"encoder     dim {manifest.encoder.dim}, {manifest.encoder.pooling} pooling, "
        f"max {manifest.encoder.max_length} tokens, inputs {', '.join(manifest.encoder.inputs)}",
        *([] if manifest.index is None else
          [f"index       hnswlib {manifest.index.space}, M={manifest.index.m}, "
           f"ef_construction={manifest.index.ef_construction}, ef={manifest.index.ef}"]),
        *([f"lexical     BM25 (k1 {manifest.lexical.k1}, b {manifest.lexical.b}) fused: cosine + "
           f"{manifest.lexical.weight} x damping x BM25 / best"] if manifest.lexical else []),
        *([f"prior       recommend adds {manifest.prior.weight:g} x log(1 + count) / log(1 + largest): "
           f"{manifest.prior.events:,} events from {safe(manifest.prior.source)}"
           + (f", half-life {manifest.prior.half_life_days:g} days" if manifest.prior.half_life_days else "")]
          if manifest.prior else []),
        *([f"descriptions {manifest.descriptions.model.dim}-d model; it takes part when a query's top-10 "
            f"margin < {manifest.descriptions.max_margin} and its top title holds < "
            f"{manifest.descriptions.min_title_cover:.2f} of its words (weight {manifest.descriptions.weight})"]
          if manifest.descriptions else []),
        "files",
    ]
    role_width = max(13, *(len(role) + 2 for role in manifest.files))
    path_width = max(18, *(len(entry.path) + 2 for entry in manifest.files.values()))
    for role, entry in sorted(manifest.files.items()):
        lines.append(f"  {role:<{role_width}}{entry.path:<{path_width}}{entry.size / 1e6:>8.2f} MB  "
                     f"sha256 {entry.sha256[:12]}")
    entries = list(_flatten(manifest.provenance))
    if verbose:
        lines.append("provenance")
        lines.extend(f"  {line}" for line in entries)
    elif entries:
        sections = ", ".join(manifest.provenance)
        lines.append(f"provenance  {len(entries)} entries ({sections}); list them with --verbose or --json")
    lines.append(f"providers   {', '.join(providers)}")
    click.echo("\n".join(safe(line) for line in lines))


def _thread_counts(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or n > 256 for n in counts):
        raise click.BadParameter(f"{value!r}: give thread counts from 1 to 256, e.g. 1,2,4,8")
    return counts


@main.command()
@click.option("--threads", "thread_counts", default="1,2,4,8", show_default=True, callback=_thread_counts,
              help="Comma-separated numbers of threads sharing one Recommender; each is run in turn.")
@click.option("--queries", type=click.IntRange(min=1), default=200, show_default=True,
              help="Calls per thread.")
@click.option("--warmup", type=click.IntRange(min=0), default=200, show_default=True,
              help="Calls made on one thread before measuring.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the workload.")
@click.option("--ort-threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, show_default=True,
              help="ONNX Runtime intra-op threads of the shared Recommender.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--url", default=None,
              help="Drive a running `edgerec serve` at this loopback URL (--threads: concurrent clients); "
                   "answers are checked against this process's, from --bundle.")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None, help="The server's key, with --url.")
@bundle_option
def loadtest(thread_counts: list[int], queries: int, warmup: int, seed: int, ort_threads: int | None,
             as_json: bool, url: str | None, api_key_file: str | None, bundle: str | None) -> None:
    """Load-test one shared Recommender: latency, QPS, memory, and answers checked against one thread.

    \b
    The workload mixes text queries, ~10% similar/recommend calls and ~10%
    bad inputs (empty, huge, undecodable text, unknown ids, k=0). Exits 1 when
    a call raised an error it should not have, or an answer differed from the
    single-thread answer.
    \b
    Example:
      edgerec loadtest --threads 1,4 --queries 500
    """
    from .tools.loadtest import format_report, run_loadtest

    rec = Recommender.load(bundle, threads=ort_threads)
    if url is not None:
        from .serve.auth import read_key_file
        from .tools.loadtest_http import format_http_report, run_http_loadtest

        report = run_http_loadtest(url, rec, clients=thread_counts, queries=queries, warmup=warmup, seed=seed,
                                   api_key=read_key_file(api_key_file) if api_key_file else None)
        lines = format_http_report(report)
    else:
        report = run_loadtest(rec, threads=thread_counts, queries=queries, warmup=warmup, seed=seed)
        lines = format_report(report)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo("\n".join(safe(line) for line in lines))
    if not report.ok:
        unexpected = sum(run.unexpected_errors for run in report.runs)
        mismatches = sum(run.mismatches for run in report.runs)
        raise _fail(f"loadtest failed: {unexpected} unexpected errors, {mismatches} answers differ "
                    "from the single-thread ones", 1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --api-key-file.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the key that /v1/* requests must send as 'Authorization: Bearer KEY'.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Requests answered at once (default: one per core).")
@click.option("--poll-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How often to look for a new version of a bundle home (0: only on SIGHUP).")
@bundle_option
def serve(host: str, port: int, api_key_file: str | None, threads: int | None, poll_seconds: float,
          bundle: str | None) -> None:
    """Serve the bundle over HTTP (needs the serve extra: pip install 'edgerec[serve]').

    \b
    POST /v1/query, /v1/similar, /v1/recommend; GET /v1/items/ID, /healthz,
    /readyz, /metrics (Prometheus). A bundle home's new version is served
    once loaded (polled, and on SIGHUP); SIGTERM finishes in-flight requests.
    \b
    Example:
      edgerec serve --bundle my_home --port 8080
    """
    from .serve.server import ServeOptions, run_server

    run_server(ServeOptions(bundle, host, port, api_key_file, threads, poll_seconds))


def _argv_text(value: str) -> str:
    """Invalid UTF-8 in argv arrives as surrogate escapes: decode those bytes exactly as stdin is decoded."""
    try:
        return os.fsencode(value).decode("utf-8", errors="replace")
    except UnicodeEncodeError:  # a surrogate no byte maps to (only via CliRunner); clean_text replaces it
        return value


@contextmanager
def _catalog_file(catalog: str) -> Iterator[str]:
    """CATALOG's path; for ``-``, stdin (JSON Lines) saved to a temporary file: a build reads its
    catalogue twice (survey, then encode), which a pipe cannot be."""
    if catalog != "-":
        yield catalog
        return
    with tempfile.TemporaryDirectory(prefix="edgerec-stdin-") as folder:
        path = os.path.join(folder, "stdin.jsonl")
        with open(path, "wb") as saved:
            shutil.copyfileobj(sys.stdin.buffer, saved)
        yield path


def _read_stdin_text() -> str:
    """Query text from stdin, invalid UTF-8 replaced by U+FFFD.

    Reads no more than the encoder will keep, plus 4 bytes so that a character
    split at the end cannot change what is kept: huge input costs no memory.
    """
    return sys.stdin.buffer.read(MAX_TEXT_BYTES + 4).decode("utf-8", errors="replace")


@main.command()
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Timed calls per latency row (default: 300; 20 with --quick).")
@click.option("--quick", is_flag=True, help="A smoke run in seconds: few repetitions, too noisy to quote.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@bundle_option
def bench(rounds: int | None, quick: bool, as_json: bool, bundle: str | None) -> None:
    """This machine's numbers for a bundle: cold start, latency, throughput, search, memory.

    \b
    Cold start and peak memory come from fresh processes; query latency
    (p50/p95/p99, three text lengths and a 10-item history) is measured at
    1 thread and at all cores, interleaved in a shuffled order; throughput
    encodes the bundle's item texts; HNSW recall@10 is checked against exact
    search over the bundle's own vectors. Takes about a minute (--quick: seconds).
    \b
    Example:
      edgerec bench --json > bench.json
    """
    from .tools.bench import config_for, format_report, run_bench

    report = run_bench(resolve_bundle_path(bundle), config_for(quick, rounds),
                       log=lambda line: click.echo(f"bench: {line}", err=True))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo("\n".join(safe(line) for line in format_report(report)))


def _flatten(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}{key}.")
    else:
        yield f"{prefix[:-1]}: {value if not isinstance(value, list) else ', '.join(map(str, value))}"


def _filter(where: tuple[str, ...]) -> list[str] | None:
    return list(where) or None


def _print(results: list[Recommendation], as_json: bool, where: tuple[str, ...] = (),
           extra: dict[str, Any] | None = None) -> None:
    """``extra``: fields every JSON line gets (query's "understood")."""
    if not results and where:
        click.echo("edgerec: no item passes the --where filter", err=True)
    if as_json:
        for result in results:
            click.echo(json.dumps({**result.to_dict(), **(extra or {})}, ensure_ascii=True))
        return
    rows = [[f"{rank:>3}", f"{result.score:6.3f}"] for rank, result in enumerate(results, start=1)]
    for line in _table(rows, results):
        click.echo(line)


_MAX_COLUMN = 60


def _table(firsts: list[list[str]], found: Sequence[Recommendation | NameMatch]) -> list[str]:
    """Table lines: each row's first cells, then the item's name ("title  [item id]") and its other metadata,
    every column padded to its widest cell so that the columns line up."""
    fields: dict[str, None] = {}  # metadata fields in the order they first appear
    for item in found:
        fields.update(dict.fromkeys(k for k in item.metadata if k != "title"))
    rows = [[*first, *(safe(cell) for cell in _cells(item, fields))] for first, item in zip(firsts, found)]
    # A column is as wide as its widest cell up to _MAX_COLUMN; a longer cell overflows its own line only.
    widths = [min(_MAX_COLUMN, max(_width(row[i]) for row in rows)) for i in range(len(rows[0]) if rows else 0)]
    return ["  ".join(cell + " " * max(0, width - _width(cell)) for cell, width in zip(row, widths)).rstrip()
            for row in rows]


def _cells(item: Recommendation | NameMatch, fields: Mapping[str, None]) -> list[str]:
    title = item.metadata.get("title")
    name = item.item_id if title in (None, "", item.item_id) else f"{title}  [{item.item_id}]"
    values = [item.metadata.get(field, "") for field in fields]
    return [str(name), *(", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in values)]


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: wide (CJK) characters take two, combining marks none."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
               for c in text)
