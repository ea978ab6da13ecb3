"""Encode a catalogue into vector shards on Ray Data: one TextEncoder (one ONNX Runtime session, or the
numpy table of a static model) per actor, ``concurrency`` actors, each writing the shards of its batches.

    python -m edgerec.scale.encode_job items.jsonl --out shards/ --concurrency 2 [--bundle MODEL]
    edgerec build items.jsonl --out bundle/ --vectors shards/ [--bundle MODEL]

The driver first checks the catalogue with the same pass `edgerec build` makes (bad lines, duplicate
ids, items without text are refused before Ray starts) and chooses the text fields the same way. Ray
reads the file's lines itself (``read_text``), so the driver never holds the catalogue; batches keep
file order (``preserve_order``), so the manifest lists the shards in catalogue order. Workers write
their shards straight to ``--out``: on a cluster that must be storage every node sees (NFS, or a
mounted bucket). Only JSON Lines catalogues: CSV rows can span lines, which a line reader cannot split.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bundle.reader import open_bundle
from ..encoder import TextEncoder
from ..errors import CatalogError, EdgerecError, InputError, one_line
from ..items import item_text
from ..recommender import default_model_path
from ..update.build import plan_catalog
from .shards import MANIFEST_NAME, ShardFile, write_manifest, write_shard

# Items per shard (one map_batches batch): 4,096 x 384 float32 is 6 MB per .npy.
SHARD_ROWS = 4096


class ShardEncoder:
    """The map_batches UDF: built once per actor, so each actor loads the model once."""

    def __init__(self, model: str, out: str, id_field: str, text_fields: Sequence[str], threads: int = 1) -> None:
        bundle = open_bundle(model, model_ok=True)
        self.encoder = TextEncoder(bundle.path("encoder"), bundle.path("tokenizer"), bundle.manifest.encoder,
                                   threads=threads)
        self.out = out
        self.id_field = id_field
        self.text_fields = tuple(text_fields)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        ids, texts = [], []
        for line in batch["text"]:
            # The same id and text `edgerec build` reads from a record (the driver's pass checked every line).
            record = json.loads(str(line).lstrip("\ufeff"))
            ids.append(str(record[self.id_field]).strip())
            texts.append(item_text(record, self.text_fields))
        shard = write_shard(self.out, f"shard-{uuid.uuid4().hex[:16]}", ids, self.encoder.encode(texts))
        return {name: [value] for name, value in shard.to_dict().items()}


@dataclass(frozen=True)
class EncodeJob:
    """A checked job: what the driver learnt before starting Ray."""

    catalog: Path
    out: Path
    model: Path
    fields: tuple[str, ...]
    id_field: str
    concurrency: int
    shard_rows: int
    threads_per_worker: int
    dim: int
    encoder_sha256: str
    tokenizer_sha256: str
    catalog_sha256: str
    count: int


def plan_job(catalog: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str | os.PathLike[str],
             concurrency: int, text_fields: Sequence[str] | None = None, id_field: str = "id",
             shard_rows: int = SHARD_ROWS, threads_per_worker: int = 1, log: Any = None) -> EncodeJob:
    """Every check that needs no Ray: the model, the catalogue (`edgerec build`'s first pass), the output."""
    if concurrency < 1 or shard_rows < 1 or threads_per_worker < 1:
        raise InputError("concurrency, shard rows and threads per worker must be at least 1")
    source = open_bundle(model, model_ok=True)
    catalog_file, survey, fields = plan_catalog(catalog, text_fields, id_field, log=log)
    if catalog_file.kind != "jsonl":
        raise CatalogError(f"{catalog}: the Ray job reads JSON Lines catalogues (.jsonl) only; "
                           "convert it, or use `edgerec build` on one machine")
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CatalogError(f"{folder}: exists and is not an empty directory; give a new directory for the shards")
    files = source.manifest.files
    return EncodeJob(Path(catalog).resolve(), folder.resolve(), Path(model).resolve(), tuple(fields), id_field,
                     concurrency, shard_rows, threads_per_worker, source.manifest.encoder.dim,
                     files["encoder"].sha256, files["tokenizer"].sha256, survey.sha256, survey.count)


def run_job(job: EncodeJob) -> list[ShardFile]:
    """Encode on Ray (initialised by the caller) into ``job.out``, then write shards.json."""
    import ray

    job.out.mkdir(parents=True, exist_ok=True)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # shards listed in catalogue order
    # Reading lines is light: asking a CPU for it would deadlock when the actors hold every CPU.
    lines = ray.data.read_text(str(job.catalog), num_cpus=0)
    written = lines.map_batches(
        ShardEncoder, fn_constructor_kwargs={"model": str(job.model), "out": str(job.out), "id_field": job.id_field,
                                             "text_fields": list(job.fields), "threads": job.threads_per_worker},
        batch_size=job.shard_rows, concurrency=job.concurrency, num_cpus=job.threads_per_worker,
        batch_format="numpy")
    shards = [ShardFile(vectors=row["vectors"], ids=row["ids"], count=int(row["count"]),
                        vectors_sha256=row["vectors_sha256"], ids_sha256=row["ids_sha256"])
              for row in written.iter_rows()]
    if sum(s.count for s in shards) != job.count:
        raise CatalogError(f"{job.catalog}: Ray read {sum(s.count for s in shards)} items, the check {job.count}; "
                           "the file changed during the job: encode again")
    write_manifest(job.out, shards, dim=job.dim, encoder_sha256=job.encoder_sha256,
                   tokenizer_sha256=job.tokenizer_sha256, id_field=job.id_field, text_fields=job.fields,
                   catalog_sha256=job.catalog_sha256)
    return shards


def encode_catalog(catalog: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str | os.PathLike[str],
                   concurrency: int, text_fields: Sequence[str] | None = None, id_field: str = "id",
                   shard_rows: int = SHARD_ROWS, threads_per_worker: int = 1, log: Any = None) -> list[ShardFile]:
    """Write ``catalog``'s vectors (by ``model``'s encoder) as shards into ``out``, then shards.json
    (``plan_job`` then ``run_job``; Ray must be initialised)."""
    return run_job(plan_job(catalog, out, model=model, concurrency=concurrency, text_fields=text_fields,
                            id_field=id_field, shard_rows=shard_rows, threads_per_worker=threads_per_worker, log=log))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgerec.scale.encode_job",
                                     description="Encode a JSON Lines catalogue into vector shards on Ray Data.")
    parser.add_argument("catalog")
    parser.add_argument("--out", required=True, help="new directory for the shards")
    parser.add_argument("--bundle", default=None, help="bundle or model whose encoder to use (default: the general "
                                                       "model, as `edgerec build`)")
    parser.add_argument("--concurrency", type=int, default=2, help="encoding actors (one model each)")
    parser.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help="items per shard")
    parser.add_argument("--text-fields", default=None, help="comma-separated; default as `edgerec build`")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    args = parser.parse_args(argv)
    fields = [f.strip() for f in args.text_fields.split(",") if f.strip()] if args.text_fields else None
    try:
        import ray
    except ImportError:
        print("edgerec: error: the Ray job needs the ray extra: pip install 'edgerec[ray]'", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        # Every check before Ray starts: a bad catalogue costs no Ray start-up.
        job = plan_job(args.catalog, args.out, model=args.bundle or default_model_path(),
                       concurrency=args.concurrency, text_fields=fields, id_field=args.id_field,
                       shard_rows=args.shard_rows, log=lambda line: print(f"edgerec: {line}", file=sys.stderr))
        ray.init(address=args.address, num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        shards = run_job(job)
        seconds = time.perf_counter() - started
    except EdgerecError as exc:
        print(f"edgerec: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a worker's failure arrives as Ray's own error, many lines long
        print(f"edgerec: error: the Ray job failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if ray.is_initialized():
            ray.shutdown()
    count = sum(s.count for s in shards)
    print(f"wrote {args.out}/{MANIFEST_NAME}: {count} items in {len(shards)} shards, {seconds:.1f} s "
          f"({count / seconds:.0f} items/s, {args.concurrency} actors)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
