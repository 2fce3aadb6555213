-- v10: a merchant's display name, one text for SQLite and PostgreSQL.
--
-- The name customers see for the merchant an API key belongs to: on its checkout pages and
-- receipts. NULL means the installation's business name (LIPA_BUSINESS_NAME).
ALTER TABLE api_keys ADD COLUMN display_name TEXT;
