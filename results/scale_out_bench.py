"""Encode a synthetic catalogue three ways and time each, for results/scale-out.md:

1. `edgerec build` in one process (encode + index + write);
2. the Ray Data job (edgerec.scale.encode_job) with 1 and with 2 actors (encode into shards only),
   then `edgerec build --vectors` (index + write, no encoding).

Each command runs in a child; wall time and the peak of the summed RSS of the child's whole process
tree (Ray's raylet, GCS, workers included; shared pages counted once per process, so an upper bound)
are recorded. ``--bundle``: the model (default: the general one that `edgerec build` uses).

    nice -n 10 python results/scale_out_bench.py 30000 /tmp/scale-out [--bundle B] > results/scale-out.json
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and every process below it."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(statm[1]) * PAGE
    below, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in below]
        below.update(children)
        frontier.extend(children)
    return sum(rss.get(p, 0) for p in below)


def measured(args: list[str]) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], tree_rss(child.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}): {err[-2000:]}")
    return {"command": " ".join(args[1:]), "wall_s": round(wall, 2), "peak_tree_rss_mb": round(peak[0] / 2**20),
            "stderr_tail": err.strip().splitlines()[-1] if err.strip() else ""}


def main() -> None:
    count, work = int(sys.argv[1]), Path(sys.argv[2])
    bundle = sys.argv[sys.argv.index("--bundle") + 1] if "--bundle" in sys.argv else None
    model = ["--bundle", bundle] if bundle else []
    work.mkdir(parents=True, exist_ok=True)
    catalog = work / f"catalog-{count}.jsonl"
    if not catalog.exists():
        subprocess.run([sys.executable, "results/scale_catalog.py", str(count), str(catalog)], cwd=REPO, check=True)
    py = sys.executable
    runs = {"build_one_process": measured([py, "-m", "edgerec", "build", str(catalog), "--out", str(work / "plain"),
                                           "--force", "--text-fields", "title,genres", *model])}
    for actors in (1, 2):
        shards = work / f"shards-{actors}"
        subprocess.run(["rm", "-rf", str(shards)], check=True)
        run = measured([py, "-m", "edgerec.scale.encode_job", str(catalog), "--out", str(shards), "--concurrency",
                        str(actors), "--num-cpus", "2", "--text-fields", "title,genres", *model])
        # The job's own time (Ray started, catalogue checked, encoded, shards written): its last line.
        job = re.search(r", ([\d.]+) s \((\d+) items/s", run["stderr_tail"])
        run["job_s"], run["job_items_per_s"] = (float(job.group(1)), int(job.group(2))) if job else (None, None)
        run["items_per_s_incl_ray_start"] = round(count / run["wall_s"])
        runs[f"ray_encode_{actors}_actors"] = run
    runs["build_from_shards"] = measured([py, "-m", "edgerec", "build", str(catalog), "--out", str(work / "from-shards"),
                                          "--force", "--vectors", str(work / "shards-2"), *model])
    plain = json.loads((work / "plain" / "manifest.json").read_text())["provenance"]["build"]
    runs["build_one_process"]["encode_s"] = plain["encode_seconds"]
    runs["build_one_process"]["index_s"] = plain["index_seconds"]
    runs["build_one_process"]["encode_items_per_s"] = plain["items_per_second"]
    print(json.dumps({"items": count, "cores": len(os.sched_getaffinity(0)), "model": bundle or "general (default)",
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
