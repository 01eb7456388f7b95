"""Loads CDM rows into DuckDB and runs SQL checks over them, for internal/gold's tests.

usage: duckdb_run.py DDL.sql DATA_DIR QUERIES.sql...

DDL.sql creates the tables (the tests generate it from OHDSI's CDM v5.4 field-level
CSV). DATA_DIR holds one <table>.csv per table, with a header naming columns; each is
inserted by column name, so columns the file lacks are null. A QUERIES file holds
queries, each after a line "-- check: <name>". The output is one JSON object: name ->
list of result rows (lists of values, dates as ISO strings).
"""
import datetime
import glob
import json
import os
import sys

import duckdb


def main():
    ddl, data_dir, query_files = sys.argv[1], sys.argv[2], sys.argv[3:]
    db = duckdb.connect()
    db.execute(open(ddl).read())
    for path in sorted(glob.glob(os.path.join(data_dir, "*.csv"))):
        table = os.path.basename(path)[:-4]
        db.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM read_csv(?, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"')",
            [path],
        )
    out = {}
    for qf in query_files:
        name, lines = None, []
        for line in open(qf).read().splitlines() + ["-- check: "]:
            if line.startswith("-- check:"):
                if name:
                    rows = db.execute("\n".join(lines)).fetchall()
                    out[name] = [[v.isoformat() if isinstance(v, (datetime.date, datetime.datetime)) else v for v in r] for r in rows]
                name, lines = line[len("-- check:"):].strip(), []
            elif name:
                lines.append(line)
    json.dump(out, sys.stdout)


main()
