"""The peer side of host/benches/reports.rs: the same report SQL in DuckDB.

usage: bench_reports_duckdb.py LANDING_DIR QUERIES_JSON RUNS
Prints JSON: {"version", "seconds": [per run], "results": {name: [[cell text]]}}.
Each run does what `sluice report` does: every report's rows into a table,
written as Parquet and CSV.
"""

import json
import os
import sys
import tempfile
import time

import duckdb

landing, queries_file, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = json.load(open(queries_file))


def text(v):
    return "" if v is None else str(v)


seconds, results = [], {}
for _ in range(runs):
    out = tempfile.mkdtemp(prefix="duck-reports-")
    started = time.perf_counter()
    con = duckdb.connect()
    for t in ("pin", "geo", "user"):
        con.execute(f"CREATE VIEW \"{t}\" AS SELECT * FROM read_parquet('{landing}/tables/{t}/**/*.parquet')")
    for q in queries:
        con.execute(f"CREATE TEMP TABLE r_{q['name']} AS {q['sql']}")
        con.execute(f"COPY r_{q['name']} TO '{os.path.join(out, q['name'])}.parquet' (FORMAT parquet)")
        con.execute(f"COPY r_{q['name']} TO '{os.path.join(out, q['name'])}.csv' (HEADER)")
        results[q["name"]] = [[text(v) for v in row] for row in con.execute(f"SELECT * FROM r_{q['name']}").fetchall()]
    con.close()
    seconds.append(time.perf_counter() - started)

print(json.dumps({"version": duckdb.__version__, "seconds": seconds, "results": results}))
