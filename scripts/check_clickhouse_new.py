#!/usr/bin/env python3
"""The jobs' schema, views and statements on today's ClickHouse (chdb-core, in process),
compared with the answers of Debian's ClickHouse 18.16 over the same data.

Called by scripts/check-clickhouse-new.sh, which ran the jobs against 18.16 (database --db at
--url) and captured their statements from `system.query_log` (--queries, JSON lines).

1. The migrations' own text (--schema, from `cargo run --example schema_sql`) is applied to
   a fresh chdb database, statement by statement: every one must apply.
2. Every table and view must exist on both, with the same columns and types.
3. Every table's rows are copied from 18.16 as RowBinary (the jobs' insert format), typed by
   18.16's columns, and read back from both: they must be equal.
4. Every view (each server's own SELECT of it), and every captured statement, is answered by
   both, with `now()`/`today()` read once for both; the answers must be equal
   (as sorted lines: a statement without ORDER BY may list rows in any order). An
   `INSERT … SELECT` (a recompute, `zero_stale`) is compared by its SELECT: what it would
   write. Statements about the server itself (`system.*`, `remote()`), DDL and plain data
   inserts are not replayed.

The switches between the versions the comparison needs: 26.x prints decimals without their
trailing zeros unless `output_format_decimal_trailing_zeros=1` (18.16 always prints them);
chdb runs in the 18.16 server's time zone (`session_timezone`); and the rows are copied with
`optimize_on_insert=0` (26.x would collapse a Replacing table's duplicate keys within the
inserted block, which 18.16 leaves to merges). Exit status 1 on any difference, with the statement and both answers.
"""

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request

from chdb import session as chdb_session

SETTINGS_26 = "output_format_decimal_trailing_zeros = 1"


def ch18_bytes(url, db, sql):
    """One statement on 18.16 over HTTP; the answer's bytes."""
    query = urllib.parse.urlencode({"database": db} if db else {})
    req = urllib.request.Request(
        f"{url}/?{query}", data=sql.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(e.read().decode(errors="replace").splitlines()[0]) from None


def ch18(url, db, sql):
    """One statement on 18.16 over HTTP; the answer as TabSeparated text."""
    return ch18_bytes(url, db, sql).decode()


class Chdb:
    def __init__(self, path):
        self.s = chdb_session.Session(path)

    def run(self, sql, fmt="TabSeparated"):
        res = self.s.query(sql, fmt)
        err = getattr(res, "error_message", None)
        if callable(err):
            err = err()
        if err:
            raise RuntimeError(err.strip().splitlines()[0])
        return res.data() if hasattr(res, "data") else str(res)


FORMAT_TAIL = re.compile(r"\s+FORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)
INSERT_SELECT = re.compile(
    r"^\s*INSERT\s+INTO\s+[`\w.]+\s*(\([^)]*\))?\s*(SELECT\b.*)$",
    re.IGNORECASE | re.DOTALL,
)


def replayable(sql):
    """The read a captured statement makes, or None when it is not replayed (and why)."""
    text = FORMAT_TAIL.sub("", sql.strip())
    head = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
    if head in {"CREATE", "DROP", "ALTER", "SYSTEM", "RENAME", "OPTIMIZE", "KILL", "USE"}:
        return None, "DDL"
    if head == "INSERT":
        m = INSERT_SELECT.match(text)
        if not m:
            return None, "data insert"
        text = m.group(2)
    if re.search(r"\bsystem\.|\bremote\(", text, re.IGNORECASE):
        return None, "about the server"
    if re.fullmatch(r"\s*SELECT\s+version\(\)\s*", text, re.IGNORECASE):
        return None, "about the server"
    return text, None


NOW = re.compile(r"\bnow\(\s*\)", re.IGNORECASE)
TODAY = re.compile(r"\btoday\(\s*\)", re.IGNORECASE)
# The view's body: after its name and column list, the first `AS SELECT`.
VIEW_SELECT = re.compile(r"^\s*CREATE\s+VIEW\s.*?\bAS\s+(SELECT\b.*)$", re.IGNORECASE | re.DOTALL)


def pinned(sql, instant):
    """The statement with the clock read once for both servers: `now()` answered a second
    apart (a migration's `applied_at`, a view's `days_behind` at midnight) is not a difference."""
    sql = NOW.sub(f"toDateTime('{instant}')", sql)
    return TODAY.sub(f"toDate(toDateTime('{instant}'))", sql)


def lines(text):
    return sorted(text.splitlines())


def diff(a, b, limit=5):
    only_a = [x for x in a if x not in b][:limit]
    only_b = [x for x in b if x not in a][:limit]
    return f"    18.16 only: {only_a}\n    26.x only:  {only_b}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()

    new = Chdb(a.work)
    version26 = new.run("SELECT version()").strip()
    version18 = ch18(a.url, None, "SELECT version()").strip()
    failures = []

    # 1. The migrations' own text applies.
    # The same time zone as the 18.16 server (`now()`, DateTime without a zone of its own).
    tz = ch18(a.url, None, "SELECT timezone()").strip()
    global SETTINGS_26
    SETTINGS_26 += f", session_timezone = '{tz}'"
    new.run(f"SET session_timezone = '{tz}'")
    new.run(f"CREATE DATABASE `{a.db}`")
    statements = json.load(open(a.schema))
    for st in statements:
        sql = st["sql"].replace("{db}", f"`{a.db}`")
        try:
            new.run(sql)
        except RuntimeError as e:
            failures.append(f"migration {st['version']}: does not apply: {e}\n    {sql[:200]}")
    new.run(f"USE `{a.db}`")

    # 2. The same tables and views, with the same columns.
    cols_sql = (
        "SELECT table, name, type FROM system.columns WHERE database = '{db}' "
        "ORDER BY table, name"
    )
    cols18 = lines(ch18(a.url, None, cols_sql.format(db=a.db)))
    cols26 = lines(new.run(cols_sql.format(db=a.db)))
    if cols18 != cols26:
        failures.append("columns differ:\n" + diff(cols18, cols26, 20))
    tables_sql = (
        "SELECT name, engine FROM system.tables WHERE database = '{db}' ORDER BY name"
    )
    kinds18 = {
        name: engine
        for name, engine in (
            l.split("\t") for l in ch18(a.url, None, tables_sql.format(db=a.db)).splitlines()
        )
    }
    names26 = {l.split("\t")[0] for l in new.run(tables_sql.format(db=a.db)).splitlines()}
    if set(kinds18) != names26:
        failures.append(
            f"tables differ: 18.16 only {sorted(set(kinds18) - names26)}, "
            f"26.x only {sorted(names26 - set(kinds18))}"
        )
    views = sorted(n for n, e in kinds18.items() if e == "View")
    tables = sorted(n for n, e in kinds18.items() if e != "View")

    # 3. The data.
    copied = 0
    table_rows = []
    for t in tables:
        names = ch18(
            a.url,
            None,
            f"SELECT name, type FROM system.columns WHERE database = '{a.db}' AND table = '{t}'",  # in table order
        ).splitlines()
        structure = ", ".join(f"`{n}` {ty}" for n, ty in (l.split("\t") for l in names))
        column_list = ", ".join(f"`{l.split(chr(9))[0]}`" for l in names)
        # As RowBinary, the format the jobs insert in (zakaz_core::rowbinary, held to what
        # 18.16 reads by the tests): 26.x must read it as 18.16 wrote it (step 4 compares
        # every table's rows).
        data = ch18_bytes(a.url, a.db, f"SELECT {column_list} FROM `{t}` FORMAT RowBinary")
        path = f"{a.work}/{t}.bin"
        with open(path, "wb") as f:
            f.write(data)
        try:
            new.run(
                # As they are: 26.x would otherwise merge duplicate keys of a Replacing table
                # within the inserted block (`optimize_on_insert`), which 18.16 never does.
                f"INSERT INTO `{t}` ({column_list}) SELECT * FROM file('{path}', 'RowBinary', '{structure}') "
                "SETTINGS optimize_on_insert = 0"
            )
        except RuntimeError as e:
            failures.append(f"table {t}: rows do not load: {e}")
        copied += int(ch18(a.url, a.db, f"SELECT count() FROM `{t}`"))
        table_rows.append((t, column_list))

    # 4. Views and captured statements, answered by both.
    instant = ch18(a.url, None, "SELECT toString(now())").strip()

    def compare(what, sql, sql26=None):
        """`sql` on both servers, or `sql` on 18.16 and `sql26` on 26.x (a view: each
        server's own definition of it)."""
        sql = pinned(sql, instant)
        sql26 = pinned(sql26, instant) if sql26 is not None else sql
        try:
            old = lines(ch18(a.url, a.db, f"{sql} FORMAT TabSeparated"))
        except RuntimeError as e:
            failures.append(f"{what}: fails on 18.16 itself: {e}\n    {sql[:300]}")
            return
        try:
            cur = lines(new.run(f"{sql26} SETTINGS {SETTINGS_26}"))
        except RuntimeError as e:
            failures.append(f"{what}: fails on {version26}: {e}\n    {sql[:300]}")
            return
        if old != cur:
            failures.append(f"{what}: answers differ\n    {sql[:300]}\n" + diff(old, cur))

    for t, column_list in table_rows:
        compare(f"table {t}", f"SELECT {column_list} FROM `{t}`")
    for v in views:
        # Each server's own SELECT of the view (it may read the clock): 18.16's as it stored
        # it, 26.x's as it built it from the migrations' text.
        show = f"SHOW CREATE TABLE `{a.db}`.`{v}`"
        bodies = []
        for server, create in (
            ("18.16", ch18(a.url, None, f"{show} FORMAT TabSeparatedRaw")),
            ("26.x", new.run(show, "TabSeparatedRaw")),
        ):
            m = VIEW_SELECT.match(create)
            if not m:
                failures.append(f"view {v}: {server}'s definition cannot be read: {create[:200]}")
                break
            bodies.append(m.group(1).strip())
        if len(bodies) == 2:
            compare(f"view {v}", bodies[0], bodies[1])
    replayed, skipped, insert_selects = 0, {}, 0
    for line in open(a.queries):
        line = line.strip()
        if not line:
            continue
        sql = json.loads(line)["query"]
        text, why = replayable(sql)
        if text is None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        replayed += 1
        insert_selects += sql.lstrip().upper().startswith("INSERT")
        compare(f"statement {replayed}", text)

    print(
        f"check-clickhouse-new: {len(statements)} schema statements, {len(tables)} tables "
        f"({copied} rows), {len(views)} views, {replayed} captured statements "
        f"({insert_selects} of them INSERT … SELECT) "
        f"(not replayed: {', '.join(f'{n} {w}' for w, n in sorted(skipped.items())) or 'none'}) "
        f"on ClickHouse {version26} (chdb-core) against {version18}"
    )
    if replayed == 0 or insert_selects == 0 or not views:
        failures.append("nothing was compared: no statement was captured")
    if failures:
        for f in failures:
            print(f"DIFFERENT: {f}", file=sys.stderr)
        print(f"check-clickhouse-new: {len(failures)} difference(s)", file=sys.stderr)
        return 1
    print("check-clickhouse-new: every answer is the same")
    return 0


if __name__ == "__main__":
    sys.exit(main())
