"""Loads a lake's gold CDM into DuckDB tables created from OHDSI's DDL, reading the
Iceberg tables with DuckDB's own iceberg extension, and runs SQL over them, for
internal/goldlake's tests. Nothing here uses fhirstream's code.

usage: duckdb_gold.py REQUEST.json

REQUEST: {"catalog": {"kind": "sql", "name": N, "uri": "/abs/catalog.db"}
                   | {"kind": "rest", "uri": "http://host:port"},
          "namespace": "cdm", "ddl": "/abs/ddl.sql", "tables": ["person", ...],
          "extra_concepts": "/abs/concepts.tsv" | null,
          "compare_files": {"concept": "/abs/CONCEPT.csv", ...} | null,
          "queries": ["/abs/checks.sql", ...]}

The DDL creates every table named (NOT NULL where the CDM requires a value); each is
filled from <namespace>.<table> by column name, after its Iceberg columns are compared
with the DDL's, name by name and type by type. extra_concepts (Athena's CONCEPT layout)
adds concepts the loaded concept table lacks. compare_files reads Athena files with
DuckDB's own CSV reader into tables of the same DDL and counts the rows that differ
from the lake's table, both ways. A query file holds queries, each after a line
"-- check: <name>".

Output, one JSON object: {"types": {table: [mismatch, ...]}, "counts": {table: rows},
"differ": {table: rows}, "checks": {name: [[value, ...], ...]}} with dates as ISO
strings.
"""
import datetime
import json
import os
import sqlite3
import sys

import duckdb


def extension_dir():
    import duckdb_ext

    for base in duckdb_ext.__path__:
        d = os.path.join(base, "extensions")
        if os.path.isdir(d):
            return d
    raise RuntimeError("duckdb_ext package has no extensions folder (pip install duckdb-ext-iceberg)")


def quote(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    req = json.load(open(sys.argv[1]))
    con = duckdb.connect(config={
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        "extension_directory": extension_dir(),
        "threads": 2,
    })
    con.execute("LOAD iceberg")
    cat, ns = req["catalog"], req["namespace"]
    if cat["kind"] == "sql":
        db = sqlite3.connect(f"file:{cat['uri']}?mode=ro", uri=True)

        def relation(table):
            row = db.execute(
                "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                (cat["name"], ns, table),
            ).fetchone()
            if row is None:
                raise LookupError(f"no table {ns}.{table} in the catalog")
            return f"iceberg_scan({quote(row[0])})"
    else:
        con.execute(f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT {quote(cat['uri'])}, AUTHORIZATION_TYPE 'none')")

        def relation(table):
            return f'lake."{ns}"."{table}"'

    con.execute(open(req["ddl"]).read())
    out = {"types": {}, "counts": {}, "differ": {}, "checks": {}}
    for table in req["tables"]:
        rel = relation(table)
        have = con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
        want = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        have = [(r[0], r[1]) for r in have]
        mismatches = []
        for i in range(max(len(have), len(want))):
            h = have[i] if i < len(have) else None
            w = want[i] if i < len(want) else None
            if h != w:
                mismatches.append(f"column {i}: lake {h}, DDL {w}")
        out["types"][table] = mismatches
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {rel}")
        out["counts"][table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if req.get("extra_concepts"):
        con.execute(
            "INSERT INTO concept SELECT CAST(concept_id AS INTEGER), concept_name, domain_id, vocabulary_id, concept_class_id, "
            "NULLIF(standard_concept, ''), concept_code, strptime(valid_start_date, '%Y%m%d')::DATE, "
            "strptime(valid_end_date, '%Y%m%d')::DATE, NULLIF(invalid_reason, '') "
            "FROM read_csv(?, delim = '\t', header = true, all_varchar = true, quote = '') x "
            "WHERE CAST(concept_id AS INTEGER) NOT IN (SELECT concept_id FROM concept)",
            [req["extra_concepts"]],
        )
    for table, path in (req.get("compare_files") or {}).items():
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        spec = "{" + ", ".join(f"{quote(c)}: {quote(t)}" for c, t in cols) + "}"
        con.execute(f"CREATE TABLE file_{table} AS SELECT * FROM {table} LIMIT 0")
        con.execute(
            f"INSERT INTO file_{table} BY NAME SELECT * FROM read_csv(?, delim = '\t', header = true, quote = '', "
            f"dateformat = '%Y%m%d', columns = {spec})",
            [path],
        )
        out["differ"][table] = con.execute(
            f"SELECT count(*) FROM ((SELECT * FROM {table} EXCEPT ALL SELECT * FROM file_{table}) "
            f"UNION ALL (SELECT * FROM file_{table} EXCEPT ALL SELECT * FROM {table}))"
        ).fetchone()[0]
        out["counts"]["file_" + table] = con.execute(f"SELECT count(*) FROM file_{table}").fetchone()[0]
    for qf in req.get("queries") or []:
        name, lines = None, []
        for line in open(qf).read().splitlines() + ["-- check: "]:
            if line.startswith("-- check:"):
                if name:
                    rows = con.execute("\n".join(lines)).fetchall()
                    out["checks"][name] = [
                        [v.isoformat() if isinstance(v, (datetime.date, datetime.datetime)) else v for v in r] for r in rows
                    ]
                name, lines = line[len("-- check:"):].strip(), []
            elif name:
                lines.append(line)
    json.dump(out, sys.stdout)


main()
