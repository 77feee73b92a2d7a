#!/usr/bin/env python3
"""Opens Philo's lake with outside Delta readers and compares it with what Philo says it wrote.

    check_lake.py EXPECT.json

EXPECT.json:
    {"lake": "/abs/dir" | "s3://bucket/prefix",
     "storage_options": {...},          # for s3 (deltalake's keys)
     "readers": ["deltalake", "polars", "duckdb"],
     "tables": {"posts": {"rows": 123, "key": "post",        # "rows": null: only open it
                          "samples": [{"post": "…", "title": "…", "tags": ["a"]}, …]}, …},
     "absent": {"column": "author", "values": ["<pseudonym>", …]}}   # optional

For every table and reader: the row count must match, every sample must be found (by its key
column; every other given field must be equal), and no row may hold an `absent` value in any
column named like it. Prints one JSON report; exits 1 on any mismatch, 2 on a reader failure.
"""
import json
import sys


def norm(v):
    """Makes values from different readers comparable."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def rows_deltalake(path, opts, table):
    from deltalake import DeltaTable

    dt = DeltaTable(f"{path.rstrip('/')}/{table}", storage_options=opts or None)
    return dt.to_pyarrow_table().to_pylist()


def rows_polars(path, opts, table):
    import polars as pl

    df = pl.read_delta(f"{path.rstrip('/')}/{table}", storage_options=opts or None)
    return df.to_dicts()


def rows_duckdb(path, opts, table):
    import duckdb
    from duckdb_extensions import import_extension

    con = duckdb.connect()
    import_extension("delta", con=con)
    con.sql("LOAD delta")
    rel = con.sql(f"SELECT * FROM delta_scan('{path.rstrip('/')}/{table}')")
    cols = rel.columns
    return [dict(zip(cols, r)) for r in rel.fetchall()]


READERS = {"deltalake": rows_deltalake, "polars": rows_polars, "duckdb": rows_duckdb}


def main():
    expect = json.load(open(sys.argv[1]))
    path = expect["lake"]
    opts = expect.get("storage_options") or {}
    report = {"mismatches": [], "counts": {}}
    absent = expect.get("absent") or {}
    absent_values = set(absent.get("values", []))
    for reader in expect.get("readers", list(READERS)):
        for table, want in expect["tables"].items():
            try:
                rows = READERS[reader](path, opts, table)
            except Exception as e:  # noqa: BLE001 - the report names the reader and table
                print(json.dumps({"reader_failed": reader, "table": table, "error": repr(e)}))
                sys.exit(2)
            report["counts"].setdefault(reader, {})[table] = len(rows)
            if want.get("rows") is not None and len(rows) != want["rows"]:
                report["mismatches"].append(
                    f"{reader} {table}: {len(rows)} rows, Philo wrote {want['rows']}"
                )
            key = want.get("key")
            by_key = {}
            for r in rows:
                if key:
                    by_key.setdefault(r.get(key), []).append(r)
                if absent_values:
                    for col, val in r.items():
                        if isinstance(val, str) and val in absent_values:
                            report["mismatches"].append(
                                f"{reader} {table}: erased value in column {col}"
                            )
            for sample in want.get("samples", []):
                candidates = by_key.get(sample[key], [])
                if not any(
                    all(norm(c.get(f)) == norm(v) for f, v in sample.items()) for c in candidates
                ):
                    report["mismatches"].append(
                        f"{reader} {table}: no row equals sample {json.dumps(sample)[:200]}"
                        f" (rows with that key: {json.dumps([{k: norm(x) for k, x in c.items()} for c in candidates], default=str)[:400]})"
                    )
    print(json.dumps(report))
    sys.exit(1 if report["mismatches"] else 0)


if __name__ == "__main__":
    main()
