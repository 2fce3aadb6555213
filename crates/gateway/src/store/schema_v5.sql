-- v5: no query filters callbacks by outcome (review lists take those no payment claimed, through
-- callbacks_payment), so the index only cost a write on every callback.
DROP INDEX IF EXISTS callbacks_outcome;
