#!/usr/bin/env bash
# Issue 22: bytes on disk of a 30-item bundle home after 3 updates (results/updates.md).
# Usage: PATH=VENV/bin:$PATH results/home_du.sh CHECKOUT WORKDIR
# (python3: one with edgerec's dependencies; CHECKOUT: the edgerec source tree to run)
# du counts a file hard-linked from two versions once; du of one version alone counts it in full.
set -euo pipefail
checkout="$(cd "$1" && pwd)"
work="$2"
rm -rf "$work" && mkdir -p "$work" && cd "$work"
edgerec() { PYTHONPATH="$checkout" python3 -m edgerec "$@"; }
python3 - <<'PY'
import json
genres = ["mystery", "romance", "science fiction", "history", "poetry", "travel"]
with open("catalog.jsonl", "w") as f:
    for i in range(30):
        f.write(json.dumps({"id": f"b{i}", "title": f"Book {i} about {genres[i % 6]}", "tags": [genres[i % 6]]}) + "\n")
for u in range(3):
    with open(f"update{u}.jsonl", "w") as f:
        f.write(json.dumps({"id": f"n{u}", "title": f"New book {u} about {genres[u]}", "tags": [genres[u]]}) + "\n")
PY
edgerec build catalog.jsonl --out bundle --text-fields title,tags 2>/dev/null
edgerec init home --from bundle 2>/dev/null
echo "after init:     $(du -sb home | cut -f1) bytes ($(du -sh home | cut -f1))"
for u in 0 1 2; do
    edgerec add "update$u.jsonl" --bundle home 2>/dev/null
done
echo "after 3 updates: $(du -sb home | cut -f1) bytes ($(du -sh home | cut -f1)); versions: $(ls home | tr '\n' ' ')"
for v in home/v*; do echo "  $v alone: $(du -sb "$v" | cut -f1) bytes"; done
edgerec query "a love story" --bundle home -k 1
