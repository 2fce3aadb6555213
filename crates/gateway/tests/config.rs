//! Settings: layering, the familiar environment names, and `lipa config check`'s findings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use lipa_gateway::config::{MpesaEnvironment, Settings};

fn load(vars: &[(&str, &str)], toml: Option<&str>) -> Result<Settings, lipa_gateway::config::ConfigError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let file = toml.map(|text| {
        let path = std::env::temp_dir().join(format!("lipa-config-{}.toml", lipa_gateway::ids::random_hex(6)));
        std::fs::write(&path, text).unwrap();
        path
    });
    let settings = Settings::load(file.as_deref(), &|k| env.get(k).cloned());
    if let Some(path) = file {
        let _ = std::fs::remove_file(path);
    }
    settings
}

const LIVE: &[(&str, &str)] = &[
    ("MPESA_ENVIRONMENT", "production"),
    ("MPESA_CONSUMER_KEY", "ck-9f8e7d"),
    ("MPESA_CONSUMER_SECRET", "cs-7a6b5c"),
    ("MPESA_PASSKEY", "live-passkey-5c4d"),
    ("MPESA_SHORTCODE", "888880"),
    ("CALLBACK_BASE_URL", "https://pay.example.com"),
    ("LIPA_CALLBACK_ALLOWLIST", "safaricom"),
];

fn findings(vars: &[(&str, &str)]) -> Vec<(bool, &'static str, String)> {
    load(vars, None).unwrap().check().into_iter().map(|f| (f.error, f.setting, f.message)).collect()
}

fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut vars: Vec<_> = LIVE.iter().filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k)).copied().collect();
    vars.extend(overrides.iter().filter(|(_, v)| !v.is_empty()).copied());
    vars
}

#[test]
fn nothing_configured_means_the_simulator_with_defaults() {
    let s = load(&[], None).unwrap();
    assert_eq!(s.mpesa.environment, MpesaEnvironment::Simulator);
    assert!(s.mpesa.environment_defaulted);
    assert_eq!(s.database_url, "sqlite:lipa.db");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert!(s.check().iter().all(|f| !f.error));
}

#[test]
fn a_correct_production_configuration_has_no_errors() {
    let s = load(LIVE, None).unwrap();
    assert_eq!(s.mpesa.environment, MpesaEnvironment::Production);
    let found = findings(LIVE);
    assert!(found.iter().all(|(error, _, _)| !error), "{found:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "MPESA_INITIATOR_NAME", "refunds not set up is a warning: {found:?}");
    assert!(found[0].2.contains("refunds are not configured"), "{found:?}");
    let connection = s.daraja_connection().unwrap();
    assert!(connection.initiator.is_none());
}

#[test]
fn refunds_need_the_initiator_and_in_production_the_certificate() {
    let initiator = [("MPESA_INITIATOR_NAME", "apiop"), ("MPESA_INITIATOR_PASSWORD", "initiator-pw-42")];
    let vars = with(&initiator);
    let found = findings(&vars);
    assert!(
        found.iter().any(|(error, setting, message)| *error
            && *setting == "MPESA_CERTIFICATE"
            && message.contains("Daraja portal")),
        "{found:?}"
    );

    let cert = std::env::temp_dir().join(format!("lipa-cert-{}.pem", lipa_gateway::ids::random_hex(6)));
    std::fs::write(&cert, daraja_sim::CERTIFICATE_PEM).unwrap();
    let mut vars = with(&initiator);
    vars.push(("MPESA_CERTIFICATE", Box::leak(cert.display().to_string().into_boxed_str())));
    assert_eq!(findings(&vars), vec![]);
    let s = load(&vars, None).unwrap();
    let connection = s.daraja_connection().unwrap();
    assert_eq!(connection.initiator.as_ref().map(daraja::Initiator::name), Some("apiop"));
    for shown in [format!("{s:?}"), format!("{connection:?}"), format!("{:?}", s.shown())] {
        assert!(!shown.contains("initiator-pw-42"), "the password shows: {shown}");
    }

    let broken = std::env::temp_dir().join(format!("lipa-cert-{}.pem", lipa_gateway::ids::random_hex(6)));
    std::fs::write(&broken, "not a certificate").unwrap();
    let mut vars = with(&initiator);
    vars.push(("MPESA_CERTIFICATE", Box::leak(broken.display().to_string().into_boxed_str())));
    let found = findings(&vars);
    assert!(found.iter().any(|(error, setting, _)| *error && *setting == "MPESA_CERTIFICATE"), "{found:?}");
    let _ = (std::fs::remove_file(cert), std::fs::remove_file(broken));

    // The sandbox's certificate is built in.
    let sandbox = with(&[initiator[0], initiator[1], ("MPESA_ENVIRONMENT", "sandbox")]);
    assert!(load(&sandbox, None).unwrap().daraja_connection().unwrap().initiator.is_some());

    let half = with(&[initiator[0]]);
    let found = findings(&half);
    assert!(found.iter().any(|(error, setting, _)| *error && *setting == "MPESA_INITIATOR_PASSWORD"), "{found:?}");
    let bad_type = load(&with(&[("MPESA_REVERSAL_IDENTIFIER_TYPE", "eleven")]), None).unwrap_err();
    assert!(bad_type.to_string().contains("MPESA_REVERSAL_IDENTIFIER_TYPE"), "{bad_type}");
    let four = load(&with(&[("MPESA_REVERSAL_IDENTIFIER_TYPE", "4")]), None).unwrap();
    assert_eq!(four.refunds.identifier_type.get(), 4);
}

#[test]
fn the_familiar_names_and_the_toml_file_layer_with_env_winning() {
    let toml = r#"
        listen = "127.0.0.1:9000"
        database_url = "sqlite:file.db"
        [mpesa]
        environment = "sandbox"
        shortcode = "600111"
        [payments]
        max_amount = 5000
    "#;
    let s = load(&[("MPESA_BUSINESS_SHORTCODE", "600222"), ("DATABASE_URL", "sqlite:env.db")], Some(toml)).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(s.database_url, "sqlite:env.db");
    assert_eq!(s.mpesa.environment, MpesaEnvironment::Sandbox);
    assert_eq!(s.mpesa.shortcode.as_deref(), Some("600222"));
    assert_eq!(s.payments.max_amount, 5000);
}

#[test]
fn the_allowlist_reads_the_word_safaricom_and_addresses() {
    let s = load(&[("LIPA_CALLBACK_ALLOWLIST", "safaricom, 10.1.2.3")], None).unwrap();
    assert_eq!(s.callbacks.allowlist.len(), 13);
    assert!(s.callbacks.allowlist.contains(&"196.201.214.200".parse().unwrap()));
    let e = load(&[("LIPA_CALLBACK_ALLOWLIST", "safaricom.com")], None).unwrap_err().to_string();
    assert!(e.contains("LIPA_CALLBACK_ALLOWLIST"), "{e}");
    let without = findings(&with(&[("LIPA_CALLBACK_ALLOWLIST", "")]));
    assert!(without.iter().any(|(error, s, _)| !error && *s == "LIPA_CALLBACK_ALLOWLIST"), "{without:?}");
}

#[test]
fn malformed_values_and_files_name_the_setting() {
    let e = load(&[("LIPA_LISTEN", "localhost")], None).unwrap_err().to_string();
    assert!(e.starts_with("LIPA_LISTEN:"), "{e}");
    let e = load(&[("MPESA_ENVIRONMENT", "live")], None).unwrap_err().to_string();
    assert!(e.contains("MPESA_ENVIRONMENT") && e.contains("sandbox, production, simulator"), "{e}");
    let e = load(&[], Some("[mpesa]\npaskey = \"x\"\n")).unwrap_err().to_string();
    assert!(e.contains("unknown field `paskey`"), "{e}");
    let e = load(&[], Some("listen = ")).unwrap_err().to_string();
    assert!(e.starts_with("config file"), "{e}");
}

#[test]
fn go_live_mistakes_are_errors_that_say_what_to_change() {
    type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);
    let cases: &[Case] = &[
        (&[("MPESA_SHORTCODE", "174379")], "MPESA_SHORTCODE", "sandbox shortcode"),
        (
            &[("MPESA_PASSKEY", "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919")],
            "MPESA_PASSKEY",
            "sandbox passkey",
        ),
        (&[("CALLBACK_BASE_URL", "http://pay.example.com")], "CALLBACK_BASE_URL", "https"),
        (&[("CALLBACK_BASE_URL", "https://example.com/mpesa")], "CALLBACK_BASE_URL", "\"mpesa\""),
        (&[("CALLBACK_BASE_URL", "")], "CALLBACK_BASE_URL", "not set"),
        (&[("MPESA_PASSKEY", " live-passkey-5c4d\n")], "MPESA_PASSKEY", "spaces"),
        (&[("MPESA_CONSUMER_SECRET", "")], "MPESA_CONSUMER_SECRET", "not set"),
        (&[("MPESA_SHORTCODE", "12")], "MPESA_SHORTCODE", "5 to 7 digit"),
        (&[("MPESA_TILL_NUMBER", "888880")], "MPESA_TILL_NUMBER", "store (head office) number"),
        (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL", "sqlite"),
        (&[("LIPA_MAX_AMOUNT", "300000")], "LIPA_MAX_AMOUNT", "250000"),
    ];
    for (overrides, setting, hint) in cases {
        let found = findings(&with(overrides));
        let f = found.iter().find(|(_, s, _)| s == setting).unwrap_or_else(|| panic!("{overrides:?}: {found:?}"));
        assert!(f.0, "{overrides:?} is an error");
        assert!(f.2.contains(hint), "{overrides:?}: {}", f.2);
    }
    let warnings = findings(&with(&[("CALLBACK_BASE_URL", "https://abc.ngrok.io")]));
    assert!(warnings.iter().any(|(error, s, _)| !error && *s == "CALLBACK_BASE_URL"));
}

/// A database that keeps nothing across a restart would lose every acknowledged payment:
/// in-memory SQLite in each spelling, and a `sqlite:` URL naming no file (SQLite then makes a
/// temporary database and deletes it on close).
#[test]
fn a_database_that_keeps_nothing_is_an_error() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite:file::memory:",
        "sqlite:file:lipa?mode=memory&cache=shared",
        "sqlite:",
        "sqlite:  ",
    ] {
        let found = findings(&with(&[("DATABASE_URL", url)]));
        let f = found.iter().find(|(_, s, _)| *s == "DATABASE_URL").unwrap_or_else(|| panic!("{url}: {found:?}"));
        assert!(f.0, "{url} is an error");
        assert!(f.2.contains("would be lost") && f.2.contains("sqlite:lipa.db"), "{url}: {}", f.2);
    }
    for url in ["sqlite:lipa.db", "sqlite:///var/lib/lipa/lipa.db", "sqlite:file:lipa.db?mode=rwc", "sqlite:memory.db"]
    {
        let found = findings(&with(&[("DATABASE_URL", url)]));
        assert!(found.iter().all(|(_, s, _)| *s != "DATABASE_URL"), "{url}: {found:?}");
    }
}

#[test]
fn debug_output_of_settings_hides_secrets() {
    let s = load(&with(&[("DATABASE_URL", "postgres://lipa:db-pw-31415@db.internal/lipa")]), None).unwrap();
    let debug = format!("{s:?} {:?}", s.daraja_connection().unwrap());
    assert!(debug.contains("postgres://***@db.internal/lipa"), "{debug}");
    for secret in ["ck-9f8e7d", "cs-7a6b5c", "live-passkey-5c4d", "db-pw-31415"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Any file text gives settings or a clear error, never a panic; errors name the file.
        #[test]
        fn any_toml_text_loads_or_is_refused_with_the_file_named(text in "\\PC{0,200}") {
            if let Err(e) = load(&[], Some(&text)) {
                prop_assert!(e.to_string().starts_with("config file"), "{}", e);
            }
        }

        /// Structurally plausible files with arbitrary values never panic either.
        #[test]
        fn plausible_toml_with_arbitrary_values_never_panics(
            listen in "\\PC{0,30}",
            env in "\\PC{0,12}",
            amount in any::<i64>(),
            secs in any::<i64>(),
        ) {
            let text = format!(
                "listen = {listen:?}\n[mpesa]\nenvironment = {env:?}\n[payments]\nmax_amount = {amount}\n[reconciliation]\nexpire_after_secs = {secs}\n"
            );
            let _ = load(&[], Some(&text)).map(|s| s.check());
        }

        /// Arbitrary environment values never panic and only ever fail with the setting named.
        #[test]
        fn arbitrary_environment_values_never_panic(
            name in prop::sample::select(vec![
                "LIPA_LISTEN", "MPESA_ENVIRONMENT", "LIPA_MAX_AMOUNT", "CALLBACK_BASE_URL", "MPESA_SHORTCODE",
                "MPESA_TILL_NUMBER", "LIPA_CALLBACK_ALLOWLIST", "DATABASE_URL", "MPESA_PASSKEY",
            ]),
            value in "\\PC{0,40}",
        ) {
            match load(&[(name, value.as_str())], None) {
                Ok(s) => { let _ = s.check(); }
                Err(e) => prop_assert!(e.to_string().contains(name), "{}: {}", name, e),
            }
        }
    }
}

#[test]
fn the_example_file_lipa_config_print_shows_loads_as_the_defaults() {
    let s = load(&[], Some(lipa_gateway::config::EXAMPLE)).unwrap();
    let defaults = load(&[], None).unwrap();
    assert_eq!(format!("{:?}", s.shown()), format!("{:?}", defaults.shown()), "the example says the defaults");
}
