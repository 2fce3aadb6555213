//! The initiator: the M-Pesa org-portal user that Reversal and Transaction Status act as, and
//! its `SecurityCredential`, the user's password RSA-encrypted (PKCS#1 v1.5 padding, base64)
//! with Safaricom's public certificate.
//!
//! The sandbox certificate ships with this crate ([`Certificate::sandbox`]); it is the copy
//! published inside other Daraja clients (SHA-256 fingerprint [`SANDBOX_FINGERPRINT`]).
//! Production's certificate comes from the Daraja portal and is read from a file
//! ([`Certificate::parse`] takes PEM or DER, a certificate or a bare public key).
//!
//! The padding is random, so each encryption differs; Daraja accepts any of them. Encrypt once
//! at start-up and reuse the credential.

use std::fmt;

use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};

use crate::secret::Secret;
use crate::validation::{InvalidField, excerpt};

const SANDBOX_PEM: &str = include_str!("certificates/sandbox.pem");

/// The SHA-256 fingerprint of the bundled sandbox certificate (`CN=sandbox.safaricom.co.ke`).
pub const SANDBOX_FINGERPRINT: &str = "122ac9047cbc99c8c941697e62eeda9704cf1a45aabcc979bd0334cfd0cb18f7";

/// An RSA public key to encrypt initiator passwords with, read from Safaricom's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    key: rsa::RsaPublicKey,
    fingerprint: String,
}

impl Certificate {
    /// The sandbox certificate bundled with this crate.
    pub fn sandbox() -> Result<Self, InvalidField> {
        Self::parse(SANDBOX_PEM.as_bytes())
    }

    /// Reads a certificate: PEM (`CERTIFICATE`, `PUBLIC KEY` or `RSA PUBLIC KEY`) or DER (the
    /// portal's `.cer` files come either way).
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidField> {
        let (label, der) = match pem(bytes)? {
            Some((label, der)) => (label, der),
            None => ("CERTIFICATE".to_owned(), bytes.to_vec()),
        };
        let key = match label.as_str() {
            "CERTIFICATE" => {
                let spki = subject_public_key_info(&der).ok_or_else(|| {
                    bad("is not an X.509 certificate (its structure could not be read); use the .cer file from the Daraja portal")
                })?;
                rsa::RsaPublicKey::from_public_key_der(spki)
                    .map_err(|e| bad(format!("holds no RSA public key ({e}); Safaricom's certificates are RSA")))?
            }
            "PUBLIC KEY" => rsa::RsaPublicKey::from_public_key_der(&der)
                .map_err(|e| bad(format!("holds no RSA public key ({e})")))?,
            "RSA PUBLIC KEY" => {
                rsa::RsaPublicKey::from_pkcs1_der(&der).map_err(|e| bad(format!("holds no RSA public key ({e})")))?
            }
            other => {
                return Err(bad(format!("is a PEM \"{}\"; expected a CERTIFICATE or PUBLIC KEY", excerpt(other))));
            }
        };
        if key.size() < 128 {
            return Err(bad(format!("key is {} bits; expected at least 1024", key.size() * 8)));
        }
        let fingerprint = hex(&Sha256::digest(&der));
        Ok(Self { key, fingerprint })
    }

    /// SHA-256 of the certificate's DER bytes, in lowercase hex: compare it with the one the
    /// portal or another copy shows.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Encrypts an initiator password into a `SecurityCredential`.
    pub fn encrypt(&self, password: &Secret) -> Result<SecurityCredential, InvalidField> {
        if password.is_blank() {
            return Err(InvalidField::new("SecurityCredential", "the initiator password is empty"));
        }
        let mut rng = rsa::rand_core::OsRng;
        let sealed = self
            .key
            .encrypt(&mut rng, rsa::Pkcs1v15Encrypt, password.expose().as_bytes())
            .map_err(|e| InvalidField::new("SecurityCredential", format!("could not encrypt the password: {e}")))?;
        Ok(SecurityCredential(Secret::new(base64::engine::general_purpose::STANDARD.encode(sealed))))
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate").field("sha256", &self.fingerprint).finish()
    }
}

fn bad(reason: impl Into<String>) -> InvalidField {
    InvalidField::new("certificate", reason)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first PEM block's label and bytes, or `None` when the input is not PEM (then DER).
fn pem(bytes: &[u8]) -> Result<Option<(String, Vec<u8>)>, InvalidField> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Ok(None) };
    let Some(start) = text.find("-----BEGIN ") else {
        return if text.trim().is_empty() { Err(bad("is empty")) } else { Ok(None) };
    };
    let rest = &text[start + 11..];
    let label_end = rest.find("-----").ok_or_else(|| bad("has a broken PEM header"))?;
    let label = rest[..label_end].trim().to_owned();
    let body = &rest[label_end + 5..];
    let end = body.find("-----END").ok_or_else(|| bad(format!("has no \"-----END {}-----\" line", excerpt(&label))))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("PEM body is not base64 ({e})")))?;
    Ok(Some((label, der)))
}

/// One DER element: its tag, its content and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The `subjectPublicKeyInfo` of an X.509 certificate, as DER: the seventh element of
/// `tbsCertificate` when the version is present, else the sixth.
fn subject_public_key_info(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = element(der)?;
    let (tbs_tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE || tbs_tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        rest = element(rest)?.2;
    }
    let (tag, _, after) = element(rest)?;
    (tag == SEQUENCE).then(|| &rest[..rest.len() - after.len()])
}

/// An initiator password encrypted for Daraja. It grants what the password grants, so it is
/// kept as secret as the password: never in `Debug`, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityCredential(Secret);

impl SecurityCredential {
    /// A credential already encrypted elsewhere (the Daraja portal's "generate" button).
    pub fn from_encrypted(base64: Secret) -> Result<Self, InvalidField> {
        let text = base64.expose().trim();
        let ok = base64::engine::general_purpose::STANDARD.decode(text).is_ok_and(|b| b.len() >= 128);
        if !ok {
            return Err(InvalidField::new(
                "SecurityCredential",
                "is not an encrypted credential (base64 of at least 128 bytes); give the initiator password and the certificate instead",
            ));
        }
        Ok(Self(Secret::new(text)))
    }

    /// The base64 text, to send on the wire.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for SecurityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecurityCredential(\"[redacted]\")")
    }
}

/// The org-portal user that Reversal and Transaction Status run as, with its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initiator {
    name: String,
    credential: SecurityCredential,
}

impl Initiator {
    /// An initiator by name (the portal's API operator, `testapi` in the sandbox), with its
    /// encrypted password.
    pub fn new(name: &str, credential: SecurityCredential) -> Result<Self, InvalidField> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "Initiator",
                format!(
                    "\"{}\" is not an initiator name (1 to 64 characters, as the org portal shows it)",
                    excerpt(name)
                ),
            ));
        }
        Ok(Self { name: name.to_owned(), credential })
    }

    /// The initiator's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The encrypted password.
    pub fn credential(&self) -> &SecurityCredential {
        &self.credential
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_bundled_sandbox_certificate_is_the_published_one() {
        let cert = Certificate::sandbox().unwrap();
        assert_eq!(cert.fingerprint(), SANDBOX_FINGERPRINT);
        assert_eq!(cert.key.size(), 256, "a 2048-bit key");
    }

    #[test]
    fn encrypting_gives_base64_of_the_key_size_and_differs_each_time() {
        let cert = Certificate::sandbox().unwrap();
        let a = cert.encrypt(&Secret::new("Safaricom999!*!")).unwrap();
        let b = cert.encrypt(&Secret::new("Safaricom999!*!")).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(a.expose()).unwrap();
        assert_eq!(bytes.len(), 256);
        assert_ne!(a, b, "PKCS#1 v1.5 padding is random");
        assert!(SecurityCredential::from_encrypted(Secret::new(a.expose())).is_ok());
        assert_eq!(format!("{a:?}"), "SecurityCredential(\"[redacted]\")");
        assert!(cert.encrypt(&Secret::new(" ")).is_err());
    }

    #[test]
    fn bad_certificates_are_explained() {
        let err = Certificate::parse(b"").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err =
            Certificate::parse(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let err = Certificate::parse(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(err.to_string().contains("expected a CERTIFICATE"), "{err}");
        let err = Certificate::parse(b"\x30\x03\x02\x01\x00").unwrap_err();
        assert!(err.to_string().contains("not an X.509 certificate"), "{err}");
        assert!(SecurityCredential::from_encrypted(Secret::new("short")).is_err());
    }

    /// Known answer: what `encrypt` produces, the matching private key turns back into the
    /// password (the simulator's key pair, whose certificate tests configure).
    #[test]
    fn the_matching_private_key_decrypts_the_credential() {
        use rsa::pkcs8::DecodePrivateKey as _;
        let cert = Certificate::parse(include_bytes!("../../daraja-sim/src/keys/simulator-certificate.pem")).unwrap();
        let key_pem = include_bytes!("../../daraja-sim/src/keys/simulator-key.pem");
        let (_, key_der) = pem(key_pem).unwrap().unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&key_der).unwrap();
        let credential = cert.encrypt(&Secret::new("Safaricom999!*!")).unwrap();
        let sealed = base64::engine::general_purpose::STANDARD.decode(credential.expose()).unwrap();
        let opened = key.decrypt(rsa::Pkcs1v15Encrypt, &sealed).unwrap();
        assert_eq!(opened, b"Safaricom999!*!");
    }

    #[test]
    fn der_certificates_read_like_pem() {
        let (_, der) = pem(SANDBOX_PEM.as_bytes()).unwrap().unwrap();
        assert_eq!(Certificate::parse(&der).unwrap(), Certificate::sandbox().unwrap());
    }

    #[test]
    fn initiator_names_are_checked_and_debug_hides_the_credential() {
        let credential = Certificate::sandbox().unwrap().encrypt(&Secret::new("pw")).unwrap();
        let initiator = Initiator::new(" testapi ", credential.clone()).unwrap();
        assert_eq!(initiator.name(), "testapi");
        assert!(!format!("{initiator:?}").contains(credential.expose()));
        assert!(Initiator::new("", credential.clone()).is_err());
        assert!(Initiator::new(&"x".repeat(65), credential).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_certificate_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Certificate::parse(&bytes);
        }

        #[test]
        fn truncated_certificates_never_panic(cut in 0usize..1600) {
            let (_, der) = pem(SANDBOX_PEM.as_bytes()).unwrap().unwrap();
            let cut = cut.min(der.len());
            let _ = Certificate::parse(&der[..cut]);
        }
    }
}
