"""Reads a Delta table two independent ways and prints what it found as JSON.

1. The `deltalake` package (delta-rs' Python binding): rows, schema, partition
   columns, version, and the `txn` version of each application id given.
2. pyarrow alone, from the table's file list: each file read with
   pyarrow.parquet, its partition values taken from the log's add actions.

Usage: delta_reader.py <table uri> [--app-id ID ...] [--column NAME]
Storage options for S3 come from the environment (AWS_ENDPOINT_URL, keys).
"""
import argparse
import json
import os
import sys

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
from deltalake import DeltaTable


def storage_options():
    opts = {}
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        if os.environ.get(k):
            opts[k] = os.environ[k]
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts or None


def pyarrow_filesystem(uri):
    """A pyarrow filesystem and the path of `uri` on it."""
    if uri.startswith("s3://"):
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        fs = pyarrow.fs.S3FileSystem(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=endpoint.split("://", 1)[1],
            scheme=endpoint.split("://", 1)[0],
            region=os.environ.get("AWS_REGION", "us-east-1"),
        )
        return fs, uri[len("s3://"):]
    if uri.startswith("file://"):
        return pyarrow.fs.LocalFileSystem(), uri[len("file://"):]
    return pyarrow.fs.LocalFileSystem(), uri


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--app-id", action="append", default=[])
    ap.add_argument("--column", default="ind", help="the column whose values are printed")
    args = ap.parse_args()

    dt = DeltaTable(args.uri, storage_options=storage_options())
    table = dt.to_pyarrow_table()
    meta = dt.metadata()
    schema = [(f.name, str(f.type)) for f in dt.schema().fields]

    # The file list, read without delta-rs' reader.
    actions = pa.table(dt.get_add_actions(flatten=True))
    fs, _ = pyarrow_filesystem(args.uri)
    partition_cols = list(meta.partition_columns)
    by_file = []
    sizes = actions.column("size_bytes").to_pylist()
    for i, path in enumerate(actions.column("path").to_pylist()):
        uri = args.uri.rstrip("/") + "/" + path
        _, on_fs = pyarrow_filesystem(uri)
        part = pq.read_table(on_fs, filesystem=fs)
        stored = fs.get_file_info(on_fs).size
        values = {c: actions.column(f"partition.{c}")[i].as_py() for c in partition_cols}
        values = {c: None if v is None else str(v) for c, v in values.items()}
        by_file.append({
            "path": path,
            "rows": part.num_rows,
            "values": part.column(args.column).to_pylist(),
            "partition": values,
            "size_in_log": sizes[i],
            "size_stored": stored,
        })

    out = {
        "version": dt.version(),
        "rows": table.num_rows,
        "values": table.column(args.column).to_pylist(),
        "partition_values": {c: [None if v is None else str(v) for v in table.column(c).to_pylist()] for c in partition_cols},
        "schema": schema,
        "partition_columns": partition_cols,
        "txn": {a: dt.transaction_version(a) for a in args.app_id},
        "files": by_file,
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
