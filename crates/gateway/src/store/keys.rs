//! API keys and their webhook signing secrets, written once over [`Store::query`] and
//! [`Store::execute_all`] for both databases. A key is stored as its hash, never whole.

use super::sql::Cell;
use super::{ApiKey, Store, StoreError, has_nul};

macro_rules! key_columns {
    () => {
        "id, name, prefix, created_at, revoked_at, display_name"
    };
}

fn key_from(row: &[Cell]) -> Result<ApiKey, StoreError> {
    match row {
        [id, name, prefix, created_at, revoked_at, display_name] => Ok(ApiKey {
            id: id.text(),
            name: name.text(),
            prefix: prefix.text(),
            created_at: created_at.int(),
            revoked_at: revoked_at.opt_int(),
            display_name: display_name.opt_text(),
        }),
        _ => Err(StoreError::corrupt(format_args!("an API key row has {} columns", row.len()))),
    }
}

impl Store {
    /// Stores a new API key's hash.
    pub async fn insert_api_key(&self, key: ApiKey, key_hash: String) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "INSERT INTO api_keys (id, name, key_hash, prefix, created_at, display_name) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                key.id.into(),
                key.name.into(),
                key_hash.into(),
                key.prefix.into(),
                key.created_at.into(),
                key.display_name.into(),
            ],
        )])
        .await
        .map(drop)
    }

    /// Sets (or with `None` clears) the display name of the live key with this id or name;
    /// whether there was one.
    pub async fn set_display_name(&self, id_or_name: &str, display_name: Option<&str>) -> Result<bool, StoreError> {
        if has_nul(id_or_name) || display_name.is_some_and(has_nul) {
            return Ok(false);
        }
        let changed = self
            .execute_all(vec![(
                "UPDATE api_keys SET display_name = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                vec![id_or_name.into(), display_name.map(str::to_owned).into()],
            )])
            .await?;
        Ok(changed.iter().sum::<u64>() > 0)
    }

    /// The display name of a key, revoked or not (its payments' pages and receipts keep it).
    pub async fn display_name(&self, api_key_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self.query("SELECT display_name FROM api_keys WHERE id = $1", vec![api_key_id.into()]).await?;
        Ok(rows.first().and_then(|row| row.first()).and_then(Cell::opt_text))
    }

    /// The live (not revoked) key with this hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL");
        let rows = self.query(sql, vec![key_hash.into()]).await?;
        rows.first().map(|r| key_from(r)).transpose()
    }

    /// Revokes a key by id or name; false if none was live.
    pub async fn revoke_api_key(&self, id_or_name: &str, now: i64) -> Result<bool, StoreError> {
        if has_nul(id_or_name) {
            return Ok(false);
        }
        let changed = self
            .execute_all(vec![(
                "UPDATE api_keys SET revoked_at = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                vec![id_or_name.into(), now.into()],
            )])
            .await?;
        Ok(changed.iter().sum::<u64>() > 0)
    }

    /// All keys, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self.query(concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY created_at"), vec![]).await?;
        rows.iter().map(|r| key_from(r)).collect()
    }

    /// The webhook signing secret of an API key, if it has one.
    pub async fn webhook_secret(&self, api_key_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self.query("SELECT webhook_secret FROM api_keys WHERE id = $1", vec![api_key_id.into()]).await?;
        Ok(rows.first().and_then(|r| r.first()).and_then(Cell::opt_text))
    }

    /// Gives an API key `secret` as its webhook secret unless it already has one (then kept).
    pub async fn init_webhook_secret(&self, api_key_id: &str, secret: &str) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "UPDATE api_keys SET webhook_secret = $2 WHERE id = $1 AND webhook_secret IS NULL",
            vec![api_key_id.into(), secret.into()],
        )])
        .await
        .map(drop)
    }

    /// Sets (or rotates) an API key's webhook secret, by key id or name; false if no live key.
    pub async fn set_webhook_secret(&self, id_or_name: &str, secret: &str) -> Result<bool, StoreError> {
        if has_nul(id_or_name) {
            return Ok(false);
        }
        let changed = self
            .execute_all(vec![(
                "UPDATE api_keys SET webhook_secret = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                vec![id_or_name.into(), secret.into()],
            )])
            .await?;
        Ok(changed.iter().sum::<u64>() > 0)
    }
}
