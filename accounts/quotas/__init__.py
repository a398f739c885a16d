"""Quota counters shared by every process and replica: reserve before work, settle after.

`ledger` defines what a ledger does; `sql_ledger` (a conditional UPDATE, the embedded
default) and `redis_ledger` (one Lua script per operation, production) do it atomically.
"""
