"""`python -m export encoders`: every candidate text encoder side by side, in one run, on this machine.

Every figure is also given as a ratio to the anchor, stock all-MiniLM-L6-v2
fused + dynamic INT8 (``minilm-int8``), so that every later student lands in
the same table and on the same plot (results/encoders.{md,json,svg}).

Per candidate:
- quality: the six text tasks of export/measure/text_tasks.py (built from
  packages, held out of every training corpus); each task's score, the mean,
  and their ratios to the anchor's. Rankers that score (queries, documents)
  directly (BM25, a fusion) are scored on the retrieval tasks from their score
  matrix with the same metrics;
- end-to-end query latency at 1 thread: ``encode_one`` + exact numpy top-10
  over the candidate's own vectors of the shipped bundle's catalogue
  (3,883 MovieLens item texts), for short titles and for descriptive sentences;
  every candidate and both kinds interleaved in a new shuffled order each
  round (edgerec.tools.timing.interleaved_seconds); the mixed p50 pools the two
  kinds' samples, equally many of each;
- catalogue encoding throughput: texts/s over those item texts, 1 thread,
  batch 32, candidates alternating chunk by chunk (peers.measure_throughput);
- size: the files the candidate reads at run time, and whether it runs without torch.

Task vectors are cached per candidate under --work/encoders/vectors, keyed by
a fingerprint of the candidate's files and the texts, so a rerun re-encodes
nothing (mpnet reads the ~16k task texts in tens of minutes on two cores);
the static models' tables are cached under --work/encoders too. Nothing is
tuned on the tasks: they are the test set.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgerec.encoder import clean_text
from edgerec.items import item_text
from edgerec.tools.timing import Timing, interleaved_seconds, machine_facts, package_versions

from ..stages.sources import QUERY_TEXTS, TeacherFacts
from ..stages.text_heldout import SimilaritySet
from .candidates import ANCHOR, BATCH, BUILDERS, TOP_K, Candidate, Context, EncodersConfig, Log, NotTrained
from .peers import files_bytes, measure_throughput
from .plots import Axis, Point, Region, Series, svg_chart
from .text_tasks import Encoder, TextTask, score, score_matrix, subsample, text_tasks

TITLES = 20                  # MovieLens titles drawn (seed) for the title queries
MIN_DESCRIPTION_WORDS = 5    # QUERY_TEXTS of at least this many words are the descriptive sentences
THROUGHPUT_CHUNK = 256
VECTOR_CHUNK = 512           # task texts encoded (and saved) per step: a killed run resumes there
TARGETS = {"quality_mean": 0.95, "quality_lowest_task": 0.85, "p50_mixed": 0.3, "p50_titles": 0.4,
           "p50_descriptions": 0.4, "texts_per_second": 3.0}
QUICK = {"max_queries": 40, "max_docs": 200, "catalogue": 500, "rounds": 30, "warmup": 5}

def cached_vectors(name: str, fingerprint: str, encode: Encoder, texts: Sequence[str], root: Path,
                   log: Log | None = None, chunk: int = VECTOR_CHUNK) -> dict[str, np.ndarray]:
    """Each distinct text's vector from ``encode``, read from ``root`` when this candidate (same fingerprint)
    already encoded these very texts. Texts go shortest first (little padding per batch), ``chunk`` at a
    time, each chunk saved as it is done, so an interrupted run resumes where it stopped."""
    ordered = sorted(set(texts), key=lambda t: (len(t), t))
    if not ordered:
        return {}
    key = hashlib.sha256(f"{fingerprint}\0".encode() + "\n".join(ordered).encode()).hexdigest()[:16]
    folder = root / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in name)}-{key}"
    final = folder / "vectors.npy"
    if final.is_file():
        vectors = np.load(final)
        if vectors.shape[0] == len(ordered):
            return dict(zip(ordered, vectors))
    folder.mkdir(parents=True, exist_ok=True)
    blocks = [ordered[start:start + chunk] for start in range(0, len(ordered), chunk)]
    paths = [folder / f"part-{number:05d}.npy" for number in range(len(blocks))]
    todo = sum(len(t) for block, path in zip(blocks, paths) if not path.is_file() for t in block)
    done = 0
    started = time.perf_counter()
    parts = []
    for block, path in zip(blocks, paths):
        if path.is_file():
            parts.append(np.load(path))
            continue
        part = np.asarray(encode(block), dtype=np.float32)
        if part.ndim != 2 or part.shape[0] != len(block):
            raise ValueError(f"{name}: encode() gave shape {part.shape} for {len(block)} texts")
        np.save(folder / "partial.npy", part)
        (folder / "partial.npy").replace(path)
        parts.append(part)
        done += sum(len(t) for t in block)
        if log is not None:
            elapsed = time.perf_counter() - started
            log(f"{name}: {sum(len(p) for p in parts):,}/{len(ordered):,} task texts ({elapsed:.0f} s, "
                f"~{elapsed / done * (todo - done):.0f} s left)")
    vectors = np.concatenate(parts)
    np.save(folder / "partial.npy", vectors)
    (folder / "partial.npy").replace(final)
    for path in paths:
        path.unlink(missing_ok=True)
    return dict(zip(ordered, vectors))


def chosen_names(only: Sequence[str]) -> list[str]:
    """The candidates to run, in table order; the anchor always (every ratio needs it)."""
    unknown = [n for n in only if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    wanted = set(only) | {ANCHOR} if only else {n for n in BUILDERS if "@" not in n}
    return [n for n in BUILDERS if n in wanted]


# -- quality -------------------------------------------------------------------------

def encoded_tasks(tasks: Sequence[TextTask], candidate: Candidate) -> list[TextTask]:
    """The tasks scored from the candidate's vectors: all of them, or only the similarity tasks for a ranker
    with its own score matrix; none for one without vectors."""
    if candidate.encode is None:
        return []
    return [t for t in tasks if candidate.scores is None or isinstance(t.data, SimilaritySet)]


def task_texts(tasks: Sequence[TextTask]) -> list[str]:
    """Every distinct text the tasks' encoders read, in first-seen order."""
    seen: dict[str, None] = {}
    for task in tasks:
        data = task.data
        texts = data.docs if isinstance(data, SimilaritySet) else data.queries + data.docs
        seen.update(dict.fromkeys(texts))
    return list(seen)


def quality(candidate: Candidate, tasks: Sequence[TextTask], cache: Path, log: Log) -> dict[str, float | None]:
    """Each task's score (None where the candidate cannot be scored on it): retrieval tasks from the
    candidate's score matrix when it has one, the rest from its (cached) vectors."""
    by_vectors = encoded_tasks(tasks, candidate)
    lookup: dict[str, np.ndarray] = {}
    if by_vectors:
        assert candidate.encode is not None
        lookup = cached_vectors(candidate.name, candidate.fingerprint, candidate.bulk_encode or candidate.encode,
                                task_texts(by_vectors), cache, log)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.stack([lookup[t] for t in texts])

    out: dict[str, float | None] = {}
    for task in tasks:
        started = time.perf_counter()
        if candidate.scores is not None and not isinstance(task.data, SimilaritySet):
            out[task.name] = score_matrix(task, candidate.scores)
        elif task.name in {t.name for t in by_vectors}:
            out[task.name] = score(task, encode)
        else:
            out[task.name] = None
        if out[task.name] is not None:
            log(f"{candidate.name}: {task.name:<13} {task.metric:<13} {out[task.name]:.4f} "
                f"({time.perf_counter() - started:.1f} s)")
    return out


# -- speed ---------------------------------------------------------------------------

class _Throughput:
    """What peers.measure_throughput reads of a variant: its key, an encoder per thread count, a hook."""

    def __init__(self, candidate: Candidate) -> None:
        self.key = candidate.name
        self.encoders = {1: self}
        self._candidate = candidate

    def before_block(self, threads: int) -> None:
        self._candidate.before_timing()

    def encode(self, texts: Sequence[str], batch_size: int = BATCH) -> np.ndarray:
        assert self._candidate.encode is not None
        return self._candidate.encode(texts)


@dataclass(frozen=True)
class QuerySet:
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]


def query_set(records: Sequence[dict], seed: int = 0) -> QuerySet:
    """``TITLES`` catalogue titles drawn with ``seed``, and the descriptive sentences among QUERY_TEXTS
    (``MIN_DESCRIPTION_WORDS`` words or more: no names, no two-word phrases)."""
    titles = [str(r["title"]) for r in records if str(r.get("title", "")).strip()]
    drawn = random.Random(seed).sample(titles, min(TITLES, len(titles)))
    descriptions = tuple(t for t in QUERY_TEXTS if len(t.split()) >= MIN_DESCRIPTION_WORDS)
    return QuerySet(tuple(drawn), descriptions)


def measure_speed(candidates: Sequence[Candidate], catalogue: Sequence[str], queries: QuerySet, rounds: int,
                  warmup: int, seed: int, log: Log) -> dict[str, dict[str, Any]]:
    """Per timed candidate: texts/s over the catalogue (1 thread, batch 32), and the end-to-end query's
    timings for titles, descriptions and both pooled, all candidates interleaved."""
    timed = [c for c in candidates if c.timed]
    log(f"throughput: {len(catalogue):,} catalogue texts, 1 thread, batch {BATCH}, {len(timed)} candidates "
        f"alternating per chunk of {THROUGHPUT_CHUNK}")
    rates, vectors = measure_throughput([_Throughput(c) for c in timed], list(catalogue), 1,  # type: ignore[arg-type]
                                        THROUGHPUT_CHUNK, seed)
    calls: dict[str, Callable[[], object]] = {}
    for c in timed:
        query = c.query_over(catalogue, vectors[c.name])
        for kind, texts in (("titles", queries.titles), ("descriptions", queries.descriptions)):
            cycle = itertools.cycle(texts)
            calls[f"{c.name}:{kind}"] = lambda q=query, it=cycle: q(next(it))
    for c in timed:
        c.before_timing()
    log(f"latency: {rounds} rounds (+{warmup} warm-up), each a title and a description query per candidate, "
        "in a new shuffled order")
    samples = interleaved_seconds(calls, rounds=rounds, warmup=warmup, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    for c in timed:
        titles, descriptions = samples[f"{c.name}:titles"], samples[f"{c.name}:descriptions"]
        out[c.name] = {"texts_per_second": rates[c.name],
                       "titles": asdict(Timing.of(titles)), "descriptions": asdict(Timing.of(descriptions)),
                       "mixed": asdict(Timing.of(titles + descriptions))}
    return out


# -- the table -----------------------------------------------------------------------

def _ratio(value: float | None, anchor: float | None) -> float | None:
    return None if value is None or anchor is None or anchor == 0 else round(float(value) / float(anchor), 4)


def candidate_row(candidate: Candidate, scores: dict[str, float | None], speed: dict[str, Any] | None,
                  anchor_scores: dict[str, float | None], anchor_speed: dict[str, Any] | None) -> dict[str, Any]:
    """One candidate's figures and their ratios to the anchor. The mean is over the tasks it was scored on,
    and its ratio is to the anchor's mean over those same tasks."""
    scored = [t for t, v in scores.items() if v is not None and anchor_scores.get(t) is not None]
    mean = float(np.mean([scores[t] for t in scored])) if scored else None
    anchor_mean = float(np.mean([anchor_scores[t] for t in scored])) if scored else None
    task_ratios = {t: _ratio(scores[t], anchor_scores[t]) for t in scored}
    row: dict[str, Any] = {
        "name": candidate.name, "description": candidate.description, "torch_free": candidate.torch_free,
        "note": candidate.note, "tasks": {t: (None if v is None else round(float(v), 4)) for t, v in scores.items()},
        "tasks_scored": scored, "mean": None if mean is None else round(float(mean), 4),
        "task_ratios": task_ratios, "mean_ratio": _ratio(mean, anchor_mean),
        "lowest_task_ratio": min((r for r in task_ratios.values() if r is not None), default=None),
        "files": [str(p) for p in candidate.files], "size_bytes": files_bytes(candidate.files) + candidate.extra_bytes,
        "texts_per_second": None, "p50_ms": {}, "latency": {}, "ratios": {},
    }
    if speed is not None:
        row["texts_per_second"] = speed["texts_per_second"]
        row["latency"] = {k: speed[k] for k in ("titles", "descriptions", "mixed")}
        row["p50_ms"] = {k: speed[k]["p50_ms"] for k in ("titles", "descriptions", "mixed")}
        if anchor_speed is not None:
            row["ratios"] = {f"p50_{k}": _ratio(speed[k]["p50_ms"], anchor_speed[k]["p50_ms"])
                             for k in ("titles", "descriptions", "mixed")}
            row["ratios"]["texts_per_second"] = _ratio(speed["texts_per_second"], anchor_speed["texts_per_second"])
    return row


def add_size_ratios(rows: list[dict[str, Any]]) -> None:
    anchor = next(r for r in rows if r["name"] == ANCHOR)
    for row in rows:
        row["ratios"]["size"] = _ratio(row["size_bytes"], anchor["size_bytes"])


def meets_targets(row: dict[str, Any]) -> dict[str, bool | None]:
    """Which of the issue's targets this row reaches (None where it has no figure)."""
    ratios = row["ratios"]

    def at_most(value: float | None, bound: float) -> bool | None:
        return None if value is None else bool(value <= bound)

    def at_least(value: float | None, bound: float) -> bool | None:
        return None if value is None else bool(value >= bound)
    return {"quality_mean": at_least(row["mean_ratio"], TARGETS["quality_mean"]),
            "quality_lowest_task": at_least(row["lowest_task_ratio"], TARGETS["quality_lowest_task"]),
            "p50_mixed": at_most(ratios.get("p50_mixed"), TARGETS["p50_mixed"]),
            "p50_titles": at_most(ratios.get("p50_titles"), TARGETS["p50_titles"]),
            "p50_descriptions": at_most(ratios.get("p50_descriptions"), TARGETS["p50_descriptions"]),
            "texts_per_second": at_least(ratios.get("texts_per_second"), TARGETS["texts_per_second"])}


# -- output --------------------------------------------------------------------------

def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "" if value is None else f" ({value:.2f}x)"


def _ms(row: dict[str, Any], kind: str) -> str:
    p50 = row["p50_ms"].get(kind)
    return "–" if p50 is None else f"{p50:.3g}{_x(row['ratios'].get(f'p50_{kind}'))}"


def markdown(body: dict[str, Any]) -> str:
    """The table, then what each candidate is, the tasks, the query sets and how it was measured."""
    rows, tasks, machine = body["candidates"], body["tasks"], body["machine"]
    names = [t["name"] for t in tasks]
    lines = [
        "# Text encoders side by side (`python -m export encoders`)", "",
        f"Command: `{body['command']}`. Measured {body['measured']} on {machine['cpu']} ({machine['cores']} cores), "
        f"1 thread for every timing; Python {machine['python']}, onnxruntime {machine['onnxruntime']}, "
        f"torch {machine.get('torch')}, sentence-transformers {machine.get('sentence-transformers')}. "
        f"Ratios are to `{ANCHOR}` (stock all-MiniLM-L6-v2, fused + dynamic INT8). Wall time {body['seconds']:.0f} s.",
        "",
    ]
    if body["config"].get("validation"):
        lines += ["**Validation sets** (from the texts the students train on: BBC headline -> article, BBC "
                  "paragraph -> its article's opening, WordNet example -> definition): settings are chosen here, "
                  "never on the test sets of results/encoders.md.", ""]
    if body["config"]["quick"]:
        lines += ["**Quick smoke run**: tasks, catalogue and rounds subsampled; not comparable with a full run.", ""]
    head = (["candidate", *names, "mean", "mean / anchor", "lowest task / anchor", "p50 titles ms",
             "p50 descriptions ms", "p50 mixed ms", "texts/s", "size MB", "no torch"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rate = row["texts_per_second"]
        mean = _num(row["mean"]) + ("" if len(row["tasks_scored"]) == len(names) or row["mean"] is None
                                    else f" ({len(row['tasks_scored'])} tasks)")
        cells = [f"`{row['name']}`", *(_num(row["tasks"].get(n)) for n in names), mean,
                 _num(row["mean_ratio"], 2), _num(row["lowest_task_ratio"], 2), _ms(row, "titles"),
                 _ms(row, "descriptions"), _ms(row, "mixed"),
                 "–" if rate is None else f"{rate:,.0f}{_x(row['ratios'].get('texts_per_second'))}",
                 f"{row['size_bytes'] / 1e6:.1f}{_x(row['ratios'].get('size'))}", "yes" if row["torch_free"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    targets = body["targets"]
    lines += [
        "", f"Targets (issue 19), as ratios to `{ANCHOR}`: mean quality >= {targets['quality_mean']} with no task "
        f"below {targets['quality_lowest_task']}; p50 mixed <= {targets['p50_mixed']}, titles and descriptions each "
        f"<= {targets['p50_titles']}; texts/s >= {targets['texts_per_second']}. Reached here:", ""]
    for row in rows:
        met = [k for k, v in row["targets"].items() if v]
        missed = [k for k, v in row["targets"].items() if v is False]
        lines.append(f"- `{row['name']}`: meets {', '.join(met) or 'none'}; misses {', '.join(missed) or 'none'}")
    lines += ["", "Per-task ratios to the anchor:", "",
              "| candidate | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for row in rows:
        lines.append(f"| `{row['name']}` | " + " | ".join(_num(row["task_ratios"].get(n), 2) for n in names) + " |")
    lines += ["", "## Candidates", ""]
    lines += [f"- `{row['name']}`: {row['description']}" + (f"; {row['note']}." if row["note"] else ".")
              for row in rows]
    lines += ["", "## Tasks", ""]
    lines += [f"- `{t['name']}` ({t['metric']}, {t['size']:,} scored, {t['texts']:,} texts): {t['description']}"
              for t in tasks]
    if body["missing_tasks"]:
        lines += [f"- missing `{name}`: {why}" for name, why in body["missing_tasks"].items()]
    if body.get("skipped"):
        lines += ["", "Not in this run (nothing to measure yet):"]
        lines += [f"- `{name}`: {why}" for name, why in body["skipped"].items()]
    q = body["queries"]
    lines += [
        "", "## How", "",
        "- Quality: each candidate's vectors of every task text (cached under work/encoders/vectors by a "
        "fingerprint of its files); retrieval tasks of a ranker with its own score matrix (`bm25`, the fusion) "
        "from that matrix, with the same metrics. The mean is over the tasks a candidate was scored on; its ratio "
        "is to the anchor's mean over the same tasks (for `bm25`: the five retrieval tasks).",
        f"- Latency: end to end = `encode_one` + exact numpy top-{TOP_K} over the candidate's own vectors of the "
        f"{body['catalogue']['texts']:,} catalogue texts ({body['catalogue']['source']}; the fusion adds BM25 over "
        f"the same texts and rank fusion). {len(q['titles'])} titles drawn with seed {body['config']['seed']} from "
        f"the catalogue ({', '.join(repr(t) for t in q['titles'][:3])}, ...) and the {len(q['descriptions'])} "
        f"descriptive sentences of export/stages/sources.py QUERY_TEXTS with {MIN_DESCRIPTION_WORDS}+ words "
        f"({', '.join(repr(t) for t in q['descriptions'][:2])}, ...). {body['config']['rounds']} rounds after "
        f"{body['config']['warmup']} warm-up; each round runs one title query and one description query per "
        "candidate (cycling through each list) in a new shuffled order; mixed = both kinds' samples pooled, "
        "equally many of each. 1 thread (ONNX Runtime intra-op 1, torch 1).",
        f"- Throughput: the catalogue texts, 1 thread, batch {BATCH}, candidates alternating per chunk of "
        f"{THROUGHPUT_CHUNK} texts in a shuffled order.",
        "- Size: the files each candidate reads at run time (model + tokenizer); `bm25` and the fusion add their "
        "BM25 postings over the catalogue. `bm25` has no latency or throughput row: it is not an encoder.",
        "- Nothing is tuned on the tasks: the static models' recipes (256 principal directions, uncentred, or "
        "centred with model2vec's default Zipf/SIF weight as model2vec distils; `-zipf`: uncentred with that "
        "weight), BM25's k1 and b and RRF's k are the standard values; every variant measured is shown.",
        "", "![quality against latency](encoders.svg)", ""]
    return "\n".join(lines)


def chart(rows: Sequence[dict[str, Any]]) -> str:
    """Quality (mean ratio) against end-to-end mixed p50 ratio, one point per timed candidate, with the target box."""
    points = [Point(r["ratios"]["p50_mixed"], r["mean_ratio"], r["name"],
                    colour="firebrick" if r["name"] == ANCHOR else ("gray" if not r["torch_free"] else None))
              for r in rows if r["ratios"].get("p50_mixed") is not None and r["mean_ratio"] is not None]
    ys = [p.y for p in points] + [TARGETS["quality_mean"]]
    ticks = [t / 10 for t in range(math.ceil(min(ys) * 10), math.floor(max(ys) * 10) + 1)]
    return svg_chart([Series("candidates", points)],
                     x=Axis(f"end-to-end query p50 over titles + descriptions, x {ANCHOR} (1 thread, log)", log=True),
                     y=Axis(f"mean task quality, x {ANCHOR}", ticks=ticks if len(ticks) >= 2 else ()),
                     regions=[Region(f"target: quality >= {TARGETS['quality_mean']}, p50 <= {TARGETS['p50_mixed']}x",
                                     x_max=TARGETS["p50_mixed"], y_min=TARGETS["quality_mean"])])


# -- the run -------------------------------------------------------------------------

def catalogue_of(bundle: Path) -> tuple[list[dict], list[str], str]:
    """(item records, their texts as the bundle's encoder reads them, where they came from)."""
    from edgerec.bundle.reader import open_bundle

    opened = open_bundle(bundle)
    fields = opened.manifest.items.text_fields
    with open(opened.path("items"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    texts = [clean_text(item_text(r, fields)) for r in records]
    return records, texts, f"{opened.manifest.name} items.jsonl, fields {', '.join(fields)}"


def run_encoders(config: EncodersConfig, stock: TeacherFacts, argv: Sequence[str] = (),
                 log: Log | None = None) -> dict[str, Any]:
    """Every chosen candidate's quality and speed, then results/encoders.{json,md,svg}; returns the JSON body."""
    started = time.perf_counter()

    def say(message: str) -> None:
        (log or print)(f"[encoders {time.perf_counter() - started:6.0f} s] {message}")

    names = chosen_names(config.only)
    rounds, warmup = config.rounds, config.warmup
    suite = text_tasks(validation=config.validation)
    if not suite.tasks:
        raise FileNotFoundError("no text task could be built: fetch the packages as export/stages/text_packages.py "
                                f"says ({'; '.join(suite.missing.values())})")
    tasks = list(suite.tasks)
    records, catalogue, source = catalogue_of(config.bundle)
    if config.quick:
        tasks = [subsample(t, QUICK["max_queries"], QUICK["max_docs"], config.seed) for t in tasks]
        drawn = sorted(random.Random(config.seed).sample(range(len(catalogue)), min(QUICK["catalogue"],
                                                                                     len(catalogue))))
        catalogue = [catalogue[i] for i in drawn]
        rounds, warmup = min(rounds, QUICK["rounds"]), min(warmup, QUICK["warmup"])
    queries = query_set(records, config.seed)
    say(f"{len(tasks)} tasks ({', '.join(t.name for t in tasks)}), {len(catalogue):,} catalogue texts, "
        f"{len(queries.titles)} titles + {len(queries.descriptions)} descriptions; candidates: {', '.join(names)}")
    if suite.missing:
        say(f"tasks missing: {', '.join(suite.missing)}")

    ctx = Context(config, stock, catalogue, say)
    candidates = []
    skipped: dict[str, str] = {}
    for name in names:
        say(f"{name}: loading")
        try:
            candidates.append(BUILDERS[name](ctx))
        except NotTrained as exc:
            if name in config.only:
                raise
            skipped[name] = str(exc)
            say(f"{name}: skipped ({exc})")
    cache = config.work / "encoders" / "vectors"
    scores = {}
    for candidate in candidates:
        say(f"{candidate.name}: scoring {len(tasks)} tasks")
        scores[candidate.name] = quality(candidate, tasks, cache, say)
    speed = measure_speed(candidates, catalogue, queries, rounds, warmup, config.seed, say)

    rows = [candidate_row(c, scores[c.name], speed.get(c.name), scores[ANCHOR], speed.get(ANCHOR))
            for c in candidates]
    add_size_ratios(rows)
    for row in rows:
        row["targets"] = meets_targets(row)
    body = {
        "command": shlex.join(["python", "-m", "export", *argv]) if argv else "python -m export encoders",
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine_facts(), **package_versions("torch", "sentence-transformers", "transformers")},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "anchor": ANCHOR, "targets": TARGETS,
        "tasks": [{"name": t.name, "metric": t.metric, "size": t.size, "texts": t.texts, "description": t.description}
                  for t in tasks],
        "missing_tasks": suite.missing,
        "skipped": skipped,
        "catalogue": {"texts": len(catalogue), "source": source},
        "queries": {"titles": list(queries.titles), "descriptions": list(queries.descriptions)},
        "candidates": rows,
    }
    body["config"].update(rounds=rounds, warmup=warmup)
    write_results(body, config.results, results_stem(config))
    say(f"wrote {config.results / results_stem(config)}.md, .json and .svg")
    return body


def results_stem(config: EncodersConfig) -> str:
    """encoders (the test sets) or encoders-validation: the two never overwrite each other."""
    return "encoders-validation" if config.validation else "encoders"


def write_results(body: dict[str, Any], results: Path, stem: str = "encoders") -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(body, indent=2) + "\n")
    (results / f"{stem}.md").write_text(markdown(body))
    (results / f"{stem}.svg").write_text(chart(body["candidates"]))
