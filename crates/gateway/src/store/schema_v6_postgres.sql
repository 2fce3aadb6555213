-- v6: nothing changes on PostgreSQL. On SQLite this version rewrites CHECK constraints that
-- SQLite would evaluate by building a table for every row (see schema_v6_sqlite.sql).
SELECT 1;
