#!/usr/bin/env bash
# The recorded `twotier bench` runs (see README.md here). Needs `make install`, MariaDB and
# Redis on loopback (PostgreSQL too, for the compare run), and wrk (apt-get install wrk). Takes
# about 35 minutes on 2 cores (the DynamoDB runs on moto, at the end, about 10).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=benchmarks/results
ROWS=${ROWS:-1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

export TWOTIER_DATABASE_URL_MARIADB=mysql://root@127.0.0.1:3306/twotier_bench
mariadb_redis=(env TWOTIER_DATABASE_URL=$TWOTIER_DATABASE_URL_MARIADB
               TWOTIER_CACHE_URL=redis://127.0.0.1:6379/0)
embedded=(env TWOTIER_DATABASE_URL=sqlite:///$WORK/superhero_db.sqlite3 TWOTIER_CACHE_URL=memory://)

"${mariadb_redis[@]}" $BIN/twotier bench http --rows "$ROWS" --out $OUT/http-mariadb-redis
"${mariadb_redis[@]}" $BIN/twotier bench http --rows "$ROWS" --server uvicorn \
    --out $OUT/http-mariadb-redis-uvicorn
"${mariadb_redis[@]}" $BIN/twotier bench http --rows "$ROWS" --workers 2 \
    --out $OUT/http-mariadb-redis-2workers
"${embedded[@]}" $BIN/twotier bench http --rows "$ROWS" --out $OUT/http-embedded
"${mariadb_redis[@]}" $BIN/twotier bench seed --rows "$ROWS" --out $OUT/seed-mariadb-redis
"${embedded[@]}" $BIN/twotier bench seed --rows "$ROWS" --out $OUT/seed-embedded
# twotier beside its peers and ceilings (benchmarks/peers/), on MariaDB and on PostgreSQL.
"${mariadb_redis[@]}" $BIN/twotier bench compare --rows "$ROWS" --duration 10 --mix-duration 60 \
    --out $OUT/compare-mariadb-redis
env TWOTIER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/twotier_bench \
    TWOTIER_CACHE_URL=redis://127.0.0.1:6379/0 \
    $BIN/twotier bench compare --rows "$ROWS" --duration 10 --mix-duration 60 \
    --out $OUT/compare-postgres-redis
# DynamoDB + Redis, against moto's server (started here; the figures are relative: moto is a
# Python emulator on the same 2 cores, not DynamoDB): 100,000 rows loaded, 5,000 served; the
# grader on 1,000 rows, 10 a batch (moto copies the whole table per TransactWriteItems).
MOTO_PORT=$($BIN/python -c 'from twotier.bench.target import free_port; print(free_port())')
$BIN/python -m tests.moto_serial "$MOTO_PORT" >/dev/null 2>&1 &
MOTO=$!
trap 'kill $MOTO; rm -rf "$WORK"' EXIT
sleep 3
dynamodb_redis=(env "TWOTIER_DATABASE_URL=dynamodb://?endpoint_url=http://127.0.0.1:$MOTO_PORT&table_prefix=bench_"
                TWOTIER_CACHE_URL=redis://127.0.0.1:6379/0 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local)
"${dynamodb_redis[@]}" $BIN/twotier bench load --rows 100000 --out $OUT/load-dynamodb-moto
"${dynamodb_redis[@]}" $BIN/twotier bench seed --rows 1000 --requests 100 --write-batch 10 \
    --out $OUT/seed-dynamodb-redis-moto
"${dynamodb_redis[@]}" $BIN/twotier bench http --rows 5000 --out $OUT/http-dynamodb-redis-moto
# Writes that bypass twotier: commit -> cache, end to end, with `twotier follow` (issue 15).
$BIN/python benchmarks/follow_lag.py --database mariadb --out $OUT/follow-lag/mariadb.json
$BIN/python benchmarks/follow_lag.py --database postgres --out $OUT/follow-lag/postgres.json
$BIN/python benchmarks/pg_decoding.py --out $OUT/pg-decoding
