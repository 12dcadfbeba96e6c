#!/usr/bin/env bash
# The recorded `twotier bench` runs (see README.md here). Needs `make install`, MariaDB and
# Redis on loopback (PostgreSQL too, for the last run), and wrk (apt-get install wrk). Takes
# about 25 minutes on 2 cores.
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
