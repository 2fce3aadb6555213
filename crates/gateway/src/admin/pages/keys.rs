//! API keys: creating, revoking and rotating keys and their webhook secrets.

use super::*;

#[derive(Debug, Deserialize)]
pub(in crate::admin) struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
}

/// When each API key was last used (recorded at most once a minute), by key id.
pub(in crate::admin) async fn last_used(store: &crate::store::Store) -> std::collections::HashMap<String, i64> {
    let rows = store.query("SELECT id, last_used_at FROM api_keys WHERE last_used_at IS NOT NULL", vec![]).await;
    rows.unwrap_or_default().iter().filter_map(|r| Some((r.first()?.text(), r.get(1)?.opt_int()?))).collect()
}

pub(in crate::admin) fn keys_page(
    staff: &Staff,
    business: &str,
    keys: &[crate::store::ApiKey],
    last_used: &std::collections::HashMap<String, i64>,
    shown_once: Option<Markup>,
    headers: &HeaderMap,
) -> Response {
    let csrf = &staff.session.csrf;
    layout(
        Some(staff),
        "API keys",
        "/admin/keys",
        html! {
            (flash_markup(headers))
            h1 { "API keys" }
            // Secrets are shown in the answer to the form that made them, never carried in a
            // cookie or a redirect.
            @if let Some(shown) = shown_once { div class="flash" role="status" { (shown) } }
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Name" } th { "Customers see" } th { "Key starts" } th { "Created" } th { "Last used" } th { "State" } th {} } }
                    tbody {
                        @for k in keys {
                            tr {
                                td { (k.name) }
                                td { (k.display_name.as_deref().unwrap_or(business)) }
                                td { code { (k.prefix) "\u{2026}" } }
                                td { (nairobi(k.created_at)) }
                                td { (last_used.get(&k.id).map_or_else(|| "never".to_owned(), |t| nairobi(*t))) }
                                td { @if let Some(r) = k.revoked_at { "revoked " (nairobi(r)) } @else { "live" } }
                                td {
                                    @if staff.is_admin() && k.revoked_at.is_none() {
                                        form method="post" action=(format!("/admin/keys/{}/rotate", k.id)) class="inline" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class="secondary" { "New webhook secret" }
                                        }
                                        form method="post" action=(format!("/admin/keys/{}/revoke", k.id)) class="inline" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class="danger" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if staff.is_admin() {
                h2 { "New key" }
                form method="post" action="/admin/keys" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="keyname" { "Name (who uses it)" }
                    input id="keyname" name="name" required maxlength="60";
                    label for="displayname" { "Name customers see (optional; else the business name)" }
                    input id="displayname" name="display_name" maxlength="60";
                    button type="submit" { "Create key" }
                }
            }
        },
    )
}

pub(in crate::admin) async fn keys(State(gateway): State<Gateway>, staff: Staff, headers: HeaderMap) -> Response {
    match gateway.store().api_keys().await {
        Ok(keys) => keys_page(
            &staff,
            &gateway.settings().business_name,
            &keys,
            &last_used(gateway.store()).await,
            None,
            &headers,
        ),
        Err(e) => store_down(&e),
    }
}

pub(in crate::admin) async fn create_key(
    State(gateway): State<Gateway>,
    staff: Staff,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return (StatusCode::BAD_REQUEST, "Missing form fields.").into_response() };
    if let Err(refused) = staff.may_act(&form.csrf) {
        return refused.into_response();
    }
    let name = form.name.trim();
    if name.is_empty() || name.len() > 60 {
        return back_with("/admin/keys", "Give the key a name of up to 60 characters.");
    }
    let display_name = match form.display_name.trim() {
        "" => None,
        typed => match crate::keys::parse_display_name(typed) {
            Ok(d) => Some(d),
            Err(e) => return back_with("/admin/keys", &format!("The name customers see: {e}.")),
        },
    };
    let store = gateway.store();
    let created = crate::keys::create_named(store, name, display_name, gateway.now()).await;
    let (key, secret) = match created {
        Ok(k) => k,
        Err(e) => return store_down(&e),
    };
    let webhook_secret = match crate::keys::webhook_secret(store, &key).await {
        Ok(s) => s,
        Err(e) => return store_down(&e),
    };
    let _ = store.audit(staff.name(), "create_key", &key.id, name, gateway.now()).await;
    match store.api_keys().await {
        Ok(keys) => {
            let shown = html! {
                p { "Key " strong { (name) } " created. Copy both values now: they are not shown again." }
                p { "API key: " code { (secret) } }
                p { "Webhook secret: " code { (webhook_secret) } }
            };
            keys_page(&staff, &gateway.settings().business_name, &keys, &last_used(store).await, Some(shown), &headers)
        }
        Err(e) => store_down(&e),
    }
}

pub(in crate::admin) async fn revoke_key(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, .. }: Action,
) -> Response {
    match gateway.store().revoke_api_key(&id, gateway.now()).await {
        Ok(true) => {
            let _ = gateway.store().audit(staff.name(), "revoke_key", &id, "", gateway.now()).await;
            back_with("/admin/keys", "Key revoked: requests with it are refused from now on.")
        }
        Ok(false) => back_with("/admin/keys", "No such live key."),
        Err(e) => store_down(&e),
    }
}

pub(in crate::admin) async fn rotate_key(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Action { staff, .. }: Action,
) -> Response {
    let secret = crate::keys::new_secret();
    let store = gateway.store();
    match store.set_webhook_secret(&id, &secret).await {
        Ok(true) => {
            let _ = store.audit(staff.name(), "rotate_webhook_secret", &id, "", gateway.now()).await;
            let shown = html! {
                p { "New webhook secret for " code { (id) } ", shown once: " code { (secret) } }
                p { "Events are signed with it from now on; give it to the shop's webhook handler." }
            };
            match store.api_keys().await {
                Ok(keys) => keys_page(
                    &staff,
                    &gateway.settings().business_name,
                    &keys,
                    &last_used(store).await,
                    Some(shown),
                    &headers,
                ),
                Err(e) => store_down(&e),
            }
        }
        Ok(false) => back_with("/admin/keys", "No such live key."),
        Err(e) => store_down(&e),
    }
}
