#!/bin/bash
# The runs of results/serve.md, one after another, from a checkout with the serve extra:
#   bash results/serve_runs.sh [WORK]      (WORK: a scratch folder, default /tmp/serve-meas)
# A: in-process loadtest, 8 threads, 100k calls. B: the same mix over HTTP, 8 clients, 100k requests.
# C: `edgerec add` while 8 clients load a served bundle home; an update SIGKILLed half-way and a
#    kill -9 of the server under load; restart; a further update picked up by the restarted server.
set -u
PY=${PY:-python}; M=${1:-/tmp/serve-meas}; URL=http://127.0.0.1:18099
mkdir -p $M
cat > $M/new-films.jsonl <<'JSONL'
{"id": "Robot Heist on Mars (2026)", "title": "Robot Heist on Mars", "year": 2026, "genres": ["Action", "Sci-Fi"]}
{"id": "The Last Lighthouse Keeper (2026)", "title": "The Last Lighthouse Keeper", "year": 2026, "genres": ["Drama"]}
{"id": "Toy Story (1995)", "title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy", "Family"]}
JSONL
echo '{"id": "Gangsters of the Moon (2027)", "title": "Gangsters of the Moon", "year": 2027, "genres": ["Crime", "Sci-Fi"]}' \
    > $M/more-films.jsonl
date -u; nproc; uptime
echo "== A. in-process, 8 threads sharing one Recommender, 100k calls"
$PY -m edgerec loadtest --threads 8 --queries 12500 --warmup 200
echo "== B. over HTTP, 8 clients, 100k requests (edgerec serve, default --threads = $(nproc))"
$PY -m edgerec serve --port 18099 2>$M/serveB.log & SERVER=$!
until curl -sf $URL/readyz >/dev/null; do sleep 0.2; done
$PY -m edgerec loadtest --url $URL --threads 8 --queries 12500 --warmup 200
curl -s $URL/metrics | grep -E '^edgerec_requests_total'
grep VmHWM /proc/$SERVER/status
kill $SERVER; wait $SERVER; echo "server exit after SIGTERM: $?"
echo "== C. updates and kills under load"
rm -rf $M/home; $PY -m edgerec init $M/home --from artifacts/default
$PY -m edgerec serve --bundle $M/home --port 18099 2>$M/serve1.log & SERVER=$!
until curl -sf $URL/readyz >/dev/null; do sleep 0.2; done
echo "== edgerec add while 8 clients load the server"
$PY -m edgerec loadtest --url $URL --bundle $M/home --threads 8 --queries 4000 --warmup 200 > $M/under-load.txt 2>&1 & LOAD=$!
sleep 15; date +%T; $PY -m edgerec add $M/new-films.jsonl --bundle $M/home --threads 1; date +%T
wait $LOAD; echo "loadtest exit $?"; cat $M/under-load.txt
curl -s $URL/metrics | grep -E '^edgerec_(reloads_total|bundle_info)'
curl -s -XPOST $URL/v1/query -d '{"text": "robot heist on mars", "k": 1}'; echo
echo "== answers of v000002 checked against v000002"
$PY -m edgerec loadtest --url $URL --bundle $M/home --threads 8 --queries 200 --warmup 0 | tail -1
echo "== under load: an update SIGKILLed half-way (EDGEREC_FAULT_AT), then kill -9 of the server, restart"
$PY -m edgerec loadtest --url $URL --bundle $M/home --threads 8 --queries 2000 --warmup 0 > $M/killed.txt 2>&1 & LOAD=$!
sleep 3
EDGEREC_FAULT_AT=after-write:index.hnsw $PY -m edgerec add $M/more-films.jsonl --bundle $M/home --threads 1 2>/dev/null
echo "add killed at after-write:index.hnsw: exit $?"
sleep 1; kill -9 $SERVER; wait $LOAD; echo "loadtest of the killed server: exit $?"; tail -4 $M/killed.txt
echo "pointer after the kills: $(cat $M/home/current)"; ls -a $M/home | tr '\n' ' '; echo
$PY -m edgerec serve --bundle $M/home --port 18099 2>$M/serve2.log & SERVER=$!
until curl -sf $URL/readyz >/dev/null; do sleep 0.2; done
echo "restarted: $(curl -s $URL/readyz)"
$PY -m edgerec loadtest --url $URL --bundle $M/home --threads 8 --queries 500 --warmup 0 | tail -1
echo "== the home still takes updates; the restarted server picks it up"
$PY -m edgerec add $M/more-films.jsonl --bundle $M/home --threads 1
sleep 4; echo "now: $(curl -s $URL/readyz)"
kill $SERVER; wait $SERVER; echo "server exit after SIGTERM: $?"
date -u; uptime
