"""Reads Apache Iceberg tables with an engine fhirstream did not write, for tests.

    python3 reader.py pyiceberg|duckdb|spark

One request per line on stdin, one JSON answer per line on the protocol stream
(stdout as inherited; everything the engines print goes to stderr instead).

Request:  {"catalog": {"kind": "sql", "name": N, "uri": "/abs/catalog.db",
                       "warehouse": "file:///abs/warehouse"}
                    | {"kind": "rest", "name": N, "uri": "http://host:port"},
           "namespace": "omop", "table": "person", "snapshot_id": 123 | null}
          (a nested namespace is dot-separated: "site1.omop")
       |  {"catalog": {...}, "sql": ["CREATE TABLE ...", "INSERT ..."]}   (Spark only)
Answer:   {"columns": [names], "rows": [{column: canonical value}]}
        | {"error": "message", "unsupported": true|false}

Canonical values are the same whatever the engine: ints, floats, strings, bools,
null; dates "YYYY-MM-DD"; timestamps ISO 8601 with microseconds, with a "Z" when
the column has a time zone (converted to UTC); decimals and UUIDs as strings;
binary as hex; lists, structs (objects) and maps (lists of [key, value]) nested.
"unsupported" marks a refusal by the engine to read what the table holds (for
example pyiceberg before equality-delete support), so a test can tell it from a
broken table.

Readers of the embedded SQLite catalog: pyiceberg opens it as its SqlCatalog and
Spark as Iceberg's JdbcCatalog over sqlite-jdbc, both under the catalog name the
writer stored; DuckDB has no SQLite catalog, so it scans the table's current
metadata file, read from the catalog database with Python's own sqlite3. REST:
pyiceberg's RestCatalog, Spark's RESTCatalog, DuckDB's ATTACH (TYPE iceberg).
"""

import datetime
import decimal
import json
import math
import os
import sqlite3
import sys
import traceback
import uuid

# The answers go to a private copy of stdout; file descriptor 1 becomes stderr
# so that nothing an engine or its JVM prints can corrupt the protocol.
_proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr


class Unsupported(Exception):
    """The engine refuses what the table holds."""


# Messages by which each engine says it cannot read a feature of the table.
UNSUPPORTED_MARKERS = (
    "not yet support",
    "not supported",
    "unsupported",
    "not implemented",
    "notimplemented",
)


def canonical(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            return value.isoformat(timespec="microseconds") + "Z"
        return value.isoformat(timespec="microseconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, datetime.time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # pyarrow gives maps as lists of (key, value) tuples.
        return [canonical(v) for v in value]
    raise TypeError(f"no canonical form for {type(value).__name__}")


def arrow_rows(table):
    """Rows of a pyarrow Table as canonical dicts."""
    import pyarrow as pa

    columns = table.column_names
    # Map columns come back as lists of (key, value) tuples. A zoned timestamp
    # comes back aware; should an engine hand one over naive, the column's type
    # still says it is UTC.
    rows = table.to_pylist()
    zoned = {
        f.name
        for f in table.schema
        if pa.types.is_timestamp(f.type) and f.type.tz is not None
    }
    out = []
    for row in rows:
        c = {}
        for name in columns:
            v = row[name]
            if name in zoned and isinstance(v, datetime.datetime) and v.tzinfo is None:
                v = v.replace(tzinfo=datetime.timezone.utc)
            c[name] = canonical(v)
        out.append(c)
    return columns, out


# --- pyiceberg -------------------------------------------------------------


class PyIceberg:
    def __init__(self):
        self.catalogs = {}

    def catalog(self, spec):
        key = json.dumps(spec, sort_keys=True)
        if key not in self.catalogs:
            if spec["kind"] == "sql":
                from pyiceberg.catalog.sql import SqlCatalog

                cat = SqlCatalog(
                    spec["name"],
                    uri="sqlite:///" + spec["uri"],
                    warehouse=spec["warehouse"],
                    # Never create the catalog's tables: a reader must not write.
                    init_catalog_tables="false",
                )
            else:
                from pyiceberg.catalog.rest import RestCatalog

                cat = RestCatalog(spec["name"], uri=spec["uri"])
            self.catalogs[key] = cat
        return self.catalogs[key]

    def read(self, req):
        tbl = self.catalog(req["catalog"]).load_table(tuple(req["namespace"].split(".")) + (req["table"],))
        scan = tbl.scan(snapshot_id=req.get("snapshot_id"))
        try:
            table = scan.to_arrow()
        except NotImplementedError as e:
            raise Unsupported(f"pyiceberg: {e}") from e
        except ValueError as e:
            if "equality delete" in str(e).lower():
                raise Unsupported(f"pyiceberg: {e}") from e
            raise
        return arrow_rows(table)


# --- DuckDB ----------------------------------------------------------------


def duckdb_extension_dir():
    """The duckdb_ext package's extensions folder: the iceberg extension and the
    avro and httpfs extensions it loads, matched to the installed duckdb, so
    nothing is downloaded."""
    import duckdb_ext

    for base in duckdb_ext.__path__:
        d = os.path.join(base, "extensions")
        if os.path.isdir(d):
            return d
    raise RuntimeError("duckdb_ext package has no extensions folder (pip install duckdb-ext-iceberg)")


def sql_string(s):
    return "'" + s.replace("'", "''") + "'"


class DuckDB:
    def __init__(self):
        import duckdb

        self.con = duckdb.connect(
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": True,
                "extension_directory": duckdb_extension_dir(),
                "threads": 2,
            }
        )
        self.con.execute("LOAD iceberg")
        self.attached = {}

    def metadata_location(self, spec, namespace, table):
        # Read-only, and not through any Iceberg library: the SQL catalog's
        # table is the same in Java's JdbcCatalog, pyiceberg and iceberg-go.
        con = sqlite3.connect(f"file:{spec['uri']}?mode=ro", uri=True)
        try:
            row = con.execute(
                "SELECT metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                (spec["name"], namespace, table),
            ).fetchone()
        finally:
            con.close()
        if row is None:
            raise LookupError(f"table {namespace}.{table} not in catalog {spec['name']} ({spec['uri']})")
        return row[0]

    def relation(self, req):
        spec = req["catalog"]
        snap = req.get("snapshot_id")
        if spec["kind"] == "sql":
            loc = self.metadata_location(spec, req["namespace"], req["table"])
            args = sql_string(loc)
            if snap is not None:
                args += f", snapshot_from_id => {int(snap)}"
            return f"iceberg_scan({args})"
        key = json.dumps(spec, sort_keys=True)
        if key not in self.attached:
            alias = f"rest{len(self.attached)}"
            self.con.execute(
                f"ATTACH '' AS {alias} (TYPE iceberg, ENDPOINT {sql_string(spec['uri'])}, "
                "AUTHORIZATION_TYPE 'none')"
            )
            self.attached[key] = alias
        rel = f'{self.attached[key]}."{req["namespace"]}"."{req["table"]}"'
        if snap is not None:
            rel += f" AT (VERSION => {int(snap)})"
        return rel

    def read(self, req):
        rel = self.relation(req)
        try:
            table = self.con.execute(f"SELECT * FROM {rel}").fetch_arrow_table()
        except Exception as e:  # duckdb's errors have no common base beyond Error
            msg = str(e)
            if any(m in msg.lower() for m in UNSUPPORTED_MARKERS):
                raise Unsupported(f"duckdb: {msg}") from e
            raise
        return arrow_rows(table)


# --- Spark -----------------------------------------------------------------


class Spark:
    """One local[2] Spark session for every request; each catalog spec gets its
    own child session (spark.newSession) so that two catalogs of the same name
    (a SQL catalog's name is part of its table keys) never meet."""

    def __init__(self):
        from pyspark.sql import SparkSession

        jars_dir = os.environ.get("FHIRSTREAM_SPARK_JARS")
        if not jars_dir or not os.path.isdir(jars_dir):
            raise RuntimeError("FHIRSTREAM_SPARK_JARS is not a directory of jars")
        jars = ",".join(
            os.path.join(jars_dir, j) for j in sorted(os.listdir(jars_dir)) if j.endswith(".jar")
        )
        self.spark = (
            SparkSession.builder.master("local[2]")
            .appName("fhirstream-testlake")
            .config("spark.jars", jars)
            .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.memory", os.environ.get("FHIRSTREAM_SPARK_MEMORY", "1g"))
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("WARN")
        self.sessions = {}

    def session(self, spec):
        key = json.dumps(spec, sort_keys=True)
        if key not in self.sessions:
            s = self.spark.newSession()
            name = spec["name"]
            p = f"spark.sql.catalog.{name}"
            s.conf.set(p, "org.apache.iceberg.spark.SparkCatalog")
            # Every read asks the catalog: the tests write between reads.
            s.conf.set(p + ".cache-enabled", "false")
            if spec["kind"] == "sql":
                s.conf.set(p + ".type", "jdbc")
                s.conf.set(p + ".uri", "jdbc:sqlite:file:" + spec["uri"])
                s.conf.set(p + ".warehouse", spec["warehouse"])
            else:
                s.conf.set(p + ".type", "rest")
                s.conf.set(p + ".uri", spec["uri"])
            self.sessions[key] = s
        return self.sessions[key]

    def read(self, req):
        spec = req["catalog"]
        s = self.session(spec)
        parts = [spec["name"]] + req["namespace"].split(".") + [req["table"]]
        q = "SELECT * FROM " + ".".join(f"`{p}`" for p in parts)
        if req.get("snapshot_id") is not None:
            q += f" VERSION AS OF {int(req['snapshot_id'])}"
        return arrow_rows(s.sql(q).toArrow())

    def execute(self, req):
        """Runs SQL statements in the catalog's session: Spark as a writer, for
        tables no fhirstream code touched."""
        s = self.session(req["catalog"])
        for stmt in req["sql"]:
            s.sql(stmt).collect()
        return [], []


ENGINES = {"pyiceberg": PyIceberg, "duckdb": DuckDB, "spark": Spark}


def answer(obj):
    _proto.write(json.dumps(obj, allow_nan=False) + "\n")
    _proto.flush()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ENGINES:
        print(f"usage: reader.py {'|'.join(ENGINES)}", file=sys.stderr)
        return 2
    try:
        engine = ENGINES[sys.argv[1]]()
    except Exception as e:
        traceback.print_exc()
        answer({"error": f"{sys.argv[1]} did not start: {e}", "unsupported": False})
        return 1
    answer({"ready": sys.argv[1]})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if "sql" in req:
                if not hasattr(engine, "execute"):
                    raise Unsupported(f"{sys.argv[1]} runs no SQL here")
                columns, rows = engine.execute(req)
            else:
                columns, rows = engine.read(req)
            answer({"columns": columns, "rows": rows})
        except Unsupported as e:
            answer({"error": str(e), "unsupported": True})
        except Exception as e:
            traceback.print_exc()
            answer({"error": f"{type(e).__name__}: {e}", "unsupported": False})
    return 0


if __name__ == "__main__":
    sys.exit(main())
