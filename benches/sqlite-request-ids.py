#!/usr/bin/env python3
"""Cost of writing invocation records with random vs time-ordered request ids.

Inserts 200,000 rows into the real `invocations` schema
(migrations/sqlite/0002_invocations.sql) with the server's SQLite settings
(WAL, synchronous=FULL, 1 MiB page cache), in transactions of 1,000 rows, once
with random request ids (UUIDv4, as generated before) and once with
time-ordered ones (UUIDv7-like, as generated now). Prints microseconds per row,
including about 2.6 us of Python overhead per row. See docs/benchmarks.md.

Usage: python3 benches/sqlite-request-ids.py [rows]
"""
import os
import sqlite3
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = open(os.path.join(ROOT, "migrations/sqlite/0002_invocations.sql")).read()
COLUMNS = ('app_id, script_id, script_name, version_id, "trigger", status, error_code, '
           'error_message, request_id, started_at, duration_us, fuel_used, fuel_limit, '
           'memory_bytes, memory_limit_bytes, cold_start, output, output_truncated')
INSERT = f"INSERT INTO invocations ({COLUMNS}) VALUES ({', '.join('?' * 18)})"


def run(time_ordered, rows, batch=1000):
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(os.path.join(directory, "bench.db"), isolation_level=None)
        for pragma in ("journal_mode=wal", "synchronous=full", "cache_size=-1024"):
            db.execute(f"PRAGMA {pragma}")
        db.execute("CREATE TABLE apps (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO apps VALUES (1)")
        db.executescript(SCHEMA)
        base = int(time.time() * 1000)
        started = time.perf_counter()
        for first in range(0, rows, batch):
            values = []
            for n in range(first, first + batch):
                random_part = uuid.uuid4().hex
                request_id = f"{base + n:012x}{random_part[12:]}" if time_ordered else random_part
                values.append((1, 1, "hello", 1, "http", 200, None, None, request_id,
                               base + n // 30, 50, 1000, 200_000_000, 100_000, 33_554_432,
                               0, "[]", 0))
            db.execute("BEGIN")
            db.executemany(INSERT, values)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed / rows * 1e6


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"random request ids:       {run(False, rows):.2f} us/row")
    print(f"time-ordered request ids: {run(True, rows):.2f} us/row")
