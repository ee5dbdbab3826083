//! Signing webhooks, and checking a signature as a receiver would.
//!
//! `Stockroom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`: the time is signed with the body, so a receiver that
//! refuses old timestamps refuses a captured request played again later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "stockroom-signature";

/// The signature header's value for `body` sent at `timestamp_s`.
pub fn sign(secret: &str, timestamp_s: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp_s},v1={}",
        hex(&mac(secret, timestamp_s, body))
    )
}

fn mac(secret: &str, timestamp_s: u64, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a signature does not prove a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature was made {age_s} s from now, more than the {tolerance_s} s allowed")]
    Stale { age_s: u64, tolerance_s: u64 },
    #[error("the signature does not match the body and secret")]
    Mismatch,
}

/// Checks a signature header as a receiver would: well formed, made within
/// `tolerance_s` of `now_s`, and matching `body` under `secret` (compared in
/// constant time).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp_s = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let age_s = now_s.abs_diff(timestamp_s);
    if age_s > tolerance_s {
        return Err(SignatureError::Stale { age_s, tolerance_s });
    }
    let mut expected =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    expected.update(timestamp_s.to_string().as_bytes());
    expected.update(b".");
    expected.update(body);
    let expected = expected.finalize().into_bytes();
    let matches = signatures.iter().any(|signature| {
        decode_hex(signature).is_some_and(|bytes| {
            use subtle::ConstantTimeEq;
            bool::from(bytes.as_slice().ct_eq(expected.as_slice()))
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HMAC-SHA256 test vector of RFC 4231 (case 2), as the signature of
    /// a body: key "Jefe", message "what do ya want for nothing?" split as
    /// "<t>.<body>" would be.
    #[test]
    fn the_mac_is_hmac_sha256_of_the_time_and_the_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let header = sign("secret", 1_700_000_000, b"{}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
    }

    #[test]
    fn a_receiver_accepts_the_signed_body_only() {
        let body = br#"{"id":"e1"}"#;
        let header = sign("a-secret-of-16-chars", 1_000, body);
        assert_eq!(
            verify("a-secret-of-16-chars", &header, body, 1_100, 300),
            Ok(())
        );
        assert_eq!(
            verify("another-secret-16", &header, body, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("a-secret-of-16-chars", &header, b"{}", 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify("a-secret-of-16-chars", &header, body, 2_000, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify("a-secret-of-16-chars", "v1=00", body, 1_000, 300),
            Err(SignatureError::Malformed)
        );
    }
}
