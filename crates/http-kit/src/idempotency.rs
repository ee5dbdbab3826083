//! The `Idempotency-Key` header, read the same way by every route that
//! takes one (orders, adjustments).

use axum::http::HeaderMap;

/// The header a client retries with, so that a retry after a lost answer
/// changes nothing twice.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 255;

/// The header's value is not 1 to [`MAX_IDEMPOTENCY_KEY_LENGTH`] visible
/// ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters")]
pub struct InvalidIdempotencyKey;

/// The `Idempotency-Key` header, checked; `None` when it is absent.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, InvalidIdempotencyKey> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|key| {
            !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LENGTH
                && key.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .map(|key| Some(key.to_owned()))
        .ok_or(InvalidIdempotencyKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_a_bounded_length() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers), Ok(None));
        headers.insert(IDEMPOTENCY_KEY_HEADER, "k-1".parse().unwrap());
        assert_eq!(idempotency_key(&headers), Ok(Some("k-1".into())));
        for bad in ["two words", "", &"x".repeat(256)] {
            headers.insert(IDEMPOTENCY_KEY_HEADER, bad.parse().unwrap());
            assert_eq!(
                idempotency_key(&headers),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
    }
}
