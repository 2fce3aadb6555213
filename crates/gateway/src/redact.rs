//! One rule for showing a URL or a connection string anywhere the gateway shows one: the CLI,
//! the dashboard, the API, webhooks' own bodies, logs. A URL keeps its scheme, host, port, path
//! and user name; its password, every query value and its fragment become `***` (they are
//! where tokens travel: `?token=…`, `#access_token=…`). A connection string that is not a URL
//! (`host=db password=…`) has the value of every key naming a secret replaced.

use serde::Serializer;

/// `raw` fit to show (see the module's rule).
pub fn url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else { return connection_string(raw) };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, bool)> = parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.is_empty())).collect();
        let query = pairs
            .iter()
            .map(|(k, empty)| {
                let k: String = url::form_urlencoded::byte_serialize(k.as_bytes()).collect();
                if *empty { k } else { format!("{k}=***") }
            })
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&query));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some("***"));
    }
    parsed.to_string()
}

/// A `key=value` connection string with the values of secret keys replaced.
fn connection_string(raw: &str) -> String {
    raw.split(' ')
        .map(|part| match part.split_once('=') {
            Some((key, _)) if names_a_secret(key) => format!("{key}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth", "sig"].iter().any(|word| key.contains(word))
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
            ("postgres://lipa:s3cret@db.internal:5432/lipa", "postgres://lipa:***@db.internal:5432/lipa"),
            (
                "postgres://lipa@db/lipa?password=s3cret&sslmode=require",
                "postgres://lipa@db/lipa?password=***&sslmode=***",
            ),
            ("https://user:pw@shop.example/hook?token=abc#frag", "https://user:***@shop.example/hook?token=***#***"),
            ("https://shop.example/lipa/webhook", "https://shop.example/lipa/webhook"),
            ("sqlite:lipa.db", "sqlite:lipa.db"),
            ("smtp://mail:pw@smtp.example:587", "smtp://mail:***@smtp.example:587"),
            ("host=db user=lipa password=s3cret", "host=db user=lipa password=***"),
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
