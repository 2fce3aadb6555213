//! `SMTP_URL` parsed once into what sending needs, so the settings check and the mail
//! worker read it the same way:
//! - `smtps://user:password@host:465`: TLS from the first byte;
//! - `smtp://user:password@host:587`: STARTTLS, required (no credentials ever sent in clear);
//! - `smtp://host:port?tls=none`: no encryption, for a relay on this machine or network.
//!
//! Errors say what is wrong with the URL, without its password.

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps`).
    Tls,
    /// STARTTLS, required (`smtp`).
    StartTls,
    /// None (`smtp` with `?tls=none`).
    None,
}

/// An SMTP server and how to sign in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or address.
    pub host: String,
    /// Port (465, 587 or 25 unless the URL says).
    pub port: u16,
    /// Encryption.
    pub security: Security,
    /// User name and password, percent-decoded, if the URL has a user.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Parses `SMTP_URL`.
pub fn parse(raw: &str) -> Result<Server, String> {
    let shown = crate::redact::url(raw);
    // Text that is not a URL is not echoed: where its password is cannot be told.
    let url = url::Url::parse(raw).map_err(|e| format!("it is not a URL ({e}); use smtp://user:password@host:587"))?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{shown:?} has no host"))?;
    let plain = url.query_pairs().any(|(k, v)| k == "tls" && v == "none");
    let (security, default_port) = match (url.scheme(), plain) {
        ("smtps", _) => (Security::Tls, 465),
        ("smtp", false) => (Security::StartTls, 587),
        ("smtp", true) => (Security::None, 25),
        (other, _) => return Err(format!("{shown:?}: scheme {other:?} is not smtp or smtps")),
    };
    let decode = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).map(|(_, v)| v.into_owned()).next();
    let credentials = (!url.username().is_empty()).then(|| {
        (decode(url.username()).unwrap_or_default(), decode(url.password().unwrap_or_default()).unwrap_or_default())
    });
    Ok(Server { host: host.to_owned(), port: url.port().unwrap_or(default_port), security, credentials })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_gives_its_security_and_port() {
        let tls = parse("smtps://a%40b:p%2Fw@mail.example").unwrap();
        assert_eq!((tls.security, tls.port), (Security::Tls, 465));
        assert_eq!(tls.credentials, Some(("a@b".into(), "p/w".into())));
        let starttls = parse("smtp://u:p@mail.example:2525").unwrap();
        assert_eq!((starttls.security, starttls.port), (Security::StartTls, 2525));
        let plain = parse("smtp://127.0.0.1?tls=none").unwrap();
        assert_eq!((plain.security, plain.port, plain.credentials), (Security::None, 25, None));
    }

    #[test]
    fn a_bad_url_is_explained_without_its_password() {
        for raw in ["http://u:hunter2@mail.example", "smtp://u:hunter2@", "not a url hunter2"] {
            let e = parse(raw).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(parse("http://mail.example").unwrap_err().contains("not smtp or smtps"));
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let shown = format!("{:?}", parse("smtp://user:hunter2@mail.example").unwrap());
        assert!(shown.contains("user") && !shown.contains("hunter2"), "{shown}");
    }
}
