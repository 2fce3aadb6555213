//! One rule for showing a URL or a connection string anywhere the gateway shows one: the CLI,
//! the dashboard, the API, webhooks' own bodies, logs. A URL keeps its scheme, host, port and
//! path; its user info, every query value and its fragment become `***` (they are where tokens
//! travel: `https://TOKEN@host`, `?token=…`, `#access_token=…`). A URL the parser refuses
//! keeps only its scheme and hosts; a `key=value` connection string that names a secret is not
//! shown at all.

use serde::Serializer;

/// `raw` fit to show (see the module's rule).
pub fn url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else { return unparsed(raw) };
    // A user name alone can be the secret (`https://TOKEN@host/`): the whole user info goes.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Only fails for URLs that cannot have user info, which this one has.
        let _ = parsed.set_username("***");
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let query = keys
            .iter()
            .map(|k| format!("{}=***", url::form_urlencoded::byte_serialize(k.as_bytes()).collect::<String>()))
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&query));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some("***"));
    }
    parsed.to_string()
}

/// A string that is not a URL the parser takes: a URL-like one (`postgres://u:pw@h1,h2/db`)
/// loses what stands between `://` and its last `@`, and everything after a `?` or `#`; a
/// `key=value` connection string that names a secret anywhere is not shown at all.
fn unparsed(raw: &str) -> String {
    if let Some((scheme, rest)) = raw.split_once("://") {
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let hidden = if rest.contains('@') { "***@" } else { "" };
        let tail = if raw.len() > scheme.len() + 3 + rest.len() { "?***" } else { "" };
        return format!("{scheme}://{hidden}{host}{tail}");
    }
    if names_a_secret(raw) { "(a connection string holding a secret; not shown)".to_owned() } else { raw.to_owned() }
}

fn names_a_secret(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth", "sig"].iter().any(|word| text.contains(word))
}

/// Serializes a URL by [`url`].
pub fn serialize<T: AsRef<str>, S: Serializer>(raw: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url(raw.as_ref()))
}

/// Serializes an optional URL by [`url`].
pub fn serialize_opt<S: Serializer>(raw: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match raw {
        Some(raw) => s.serialize_str(&url(raw)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_query_values_and_fragments_are_hidden_and_the_rest_kept() {
        for (raw, shown) in [
            ("postgres://lipa:s3cret@db.internal:5432/lipa", "postgres://***@db.internal:5432/lipa"),
            (
                "postgres://lipa@db/lipa?password=s3cret&sslmode=require",
                "postgres://***@db/lipa?password=***&sslmode=***",
            ),
            ("https://user:pw@shop.example/hook?token=abc#frag", "https://***@shop.example/hook?token=***#***"),
            ("https://ghp_TOKEN@shop.example/hook?s3cretToken", "https://***@shop.example/hook?s3cretToken=***"),
            ("https://shop.example/lipa/webhook", "https://shop.example/lipa/webhook"),
            ("sqlite:lipa.db", "sqlite:lipa.db"),
            ("smtp://mail:pw@smtp.example:587", "smtp://***@smtp.example:587"),
            ("postgres://u:pw@h1:5432,h2:5432/db?x=1", "postgres://***@h1:5432,h2:5432/db?***"),
            ("host=db user=lipa password = 's3 cret'", "(a connection string holding a secret; not shown)"),
            ("host=db user=lipa", "host=db user=lipa"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_password_or_query_value_survives(password in "[a-zA-Z0-9]{8,20}", token in "[a-zA-Z0-9]{8,20}") {
            for raw in [
                format!("postgres://u:{password}@h/db?x={token}"),
                format!("https://h/p?token={token}#{password}"),
                format!("host=h password={password} api_key={token}"),
            ] {
                let shown = url(&raw);
                proptest::prop_assert!(!shown.contains(&password) && !shown.contains(&token), "{raw} -> {shown}");
            }
        }
    }
}
