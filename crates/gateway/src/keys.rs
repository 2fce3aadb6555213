//! Merchant API keys: `lipa_sk_` + 32 hex characters, shown once, stored as a SHA-256 hash.
//! A hash (not a password hash) is right here: the keys are long random values, and every
//! request must be checked quickly.

use crate::ids;
use crate::store::{ApiKey, Store, StoreError};

/// A new webhook signing secret: `whsec_` and 48 hex characters.
pub fn new_secret() -> String {
    format!("whsec_{}", ids::random_hex(24))
}

/// Creates a key named `name` with a webhook signing secret; returns the stored record and the
/// key itself (show it once). The webhook secret is read with [`webhook_secret`].
pub async fn create(store: &Store, name: &str, now: i64) -> Result<(ApiKey, String), StoreError> {
    create_named(store, name, None, now).await
}

/// [`create`], with the name customers see (see [`parse_display_name`]), in the same write.
pub async fn create_named(
    store: &Store,
    name: &str,
    display_name: Option<String>,
    now: i64,
) -> Result<(ApiKey, String), StoreError> {
    let secret = format!("lipa_sk_{}", ids::random_hex(16));
    let key = ApiKey {
        id: format!("key_{}", ids::random_hex(6)),
        name: name.to_owned(),
        prefix: secret[..12].to_owned(),
        created_at: now,
        revoked_at: None,
        display_name,
    };
    store.insert_api_key(key.clone(), ids::sha256_hex(secret.as_bytes())).await?;
    store.set_webhook_secret(&key.id, &new_secret()).await?;
    Ok((key, secret))
}

/// A merchant's display name as customers will read it: 1 to 60 characters, no control
/// characters, spaces trimmed.
pub fn parse_display_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        return Err(format!("a display name has 1 to 60 characters, not {}", name.chars().count()));
    }
    if name.chars().any(char::is_control) {
        return Err("a display name cannot contain control characters (new lines, tabs)".into());
    }
    Ok(name.to_owned())
}

/// The name customers see for the merchant a key belongs to: its display name, else the
/// installation's business name.
pub async fn merchant_name(store: &Store, api_key_id: &str, business_name: &str) -> Result<String, StoreError> {
    Ok(store.display_name(api_key_id).await?.unwrap_or_else(|| business_name.to_owned()))
}

/// The webhook signing secret of a key, creating one if it has none. Two callers racing
/// both get the one that was written first.
pub async fn webhook_secret(store: &Store, key: &ApiKey) -> Result<String, StoreError> {
    webhook_secret_of(store, &key.id).await
}

/// [`webhook_secret`] by key id.
pub(crate) async fn webhook_secret_of(store: &Store, key_id: &str) -> Result<String, StoreError> {
    if let Some(secret) = store.webhook_secret(key_id).await? {
        return Ok(secret);
    }
    store.init_webhook_secret(key_id, &new_secret()).await?;
    store
        .webhook_secret(key_id)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("API key {key_id} has no webhook secret").into()))
}

/// The live key a bearer token belongs to.
pub async fn authenticate(store: &Store, bearer: &str) -> Result<Option<ApiKey>, StoreError> {
    let bearer = bearer.trim();
    if !bearer.starts_with("lipa_sk_") || bearer.len() != 40 {
        return Ok(None);
    }
    store.api_key_by_hash(&ids::sha256_hex(bearer.as_bytes())).await
}
