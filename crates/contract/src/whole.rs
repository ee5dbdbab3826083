//! Whole numbers as JSON Schema counts them: `136.0` is the integer 136.
//!
//! The OpenAPI documents say `type: integer`, which a client (or a schema
//! fuzzer) may write as `136.0`; serde's integer types refuse that. Fields
//! of the request documents use these functions instead, which take any
//! JSON number without a fractional part and still refuse `2.5`, `-1`, and
//! numbers beyond the field's type.

use serde::Deserialize;
use serde::de::{Deserializer, Error};

/// The largest number any of these accept: the documents say `int64`.
pub const MAX_WHOLE: u64 = i64::MAX as u64;

/// Why a JSON number is not the whole number a field wants; serde shows it
/// as the document's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWhole {
    #[error("expected a whole number of at least 0, got {0}")]
    NotNonNegative(serde_json::Number),
    #[error("expected a whole number within int64, got {0}")]
    NotWithinInt64(serde_json::Number),
    #[error("the number {0} is beyond int64")]
    BeyondInt64(serde_json::Number),
    #[error("the number {0} is too large here")]
    TooLarge(serde_json::Number),
}

/// A whole, non-negative number that fits `T` (and `int64`).
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    from_number(&number).map_err(D::Error::custom)
}

/// [`whole`] for an optional field (absent or `null` is `None`).
pub fn optional_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let number = Option::<serde_json::Number>::deserialize(deserializer)?;
    number
        .map(|number| from_number(&number))
        .transpose()
        .map_err(D::Error::custom)
}

fn from_number<T: TryFrom<u64>>(number: &serde_json::Number) -> Result<T, NotWhole> {
    let value = match (number.as_u64(), number.as_f64()) {
        (Some(value), _) => value,
        (None, Some(value))
            if value.fract() == 0.0 && (0.0..=MAX_WHOLE as f64).contains(&value) =>
        {
            value as u64
        }
        _ => return Err(NotWhole::NotNonNegative(number.clone())),
    };
    if value > MAX_WHOLE {
        return Err(NotWhole::BeyondInt64(number.clone()));
    }
    T::try_from(value).map_err(|_| NotWhole::TooLarge(number.clone()))
}

/// A whole number, negative or not, that fits `i64`.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    signed(&number).map_err(D::Error::custom)
}

/// A list of [`integer`]s.
pub fn integers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    Vec::<serde_json::Number>::deserialize(deserializer)?
        .iter()
        .map(signed)
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

fn signed(number: &serde_json::Number) -> Result<i64, NotWhole> {
    match (number.as_i64(), number.as_f64()) {
        (Some(value), _) => Ok(value),
        (None, Some(value))
            if value.fract() == 0.0 && (i64::MIN as f64..i64::MAX as f64).contains(&value) =>
        {
            Ok(value as i64)
        }
        _ => Err(NotWhole::NotWithinInt64(number.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "whole")]
        count: u32,
    }

    fn count(json: &str) -> Result<u32, String> {
        serde_json::from_str::<Probe>(json)
            .map(|probe| probe.count)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn integral_floats_count_as_whole_numbers() {
        assert_eq!(count(r#"{"count": 136}"#), Ok(136));
        assert_eq!(count(r#"{"count": 136.0}"#), Ok(136));
        assert!(count(r#"{"count": 2.5}"#).is_err());
        assert!(count(r#"{"count": -1}"#).is_err());
        assert!(count(r#"{"count": 4294967296}"#).is_err());
        assert!(count(r#"{"count": "3"}"#).is_err());
    }

    #[derive(Debug, Deserialize)]
    struct Ids {
        #[serde(deserialize_with = "integers")]
        ids: Vec<i64>,
    }

    #[test]
    fn signed_lists_take_integral_floats_within_int64() {
        let ids: Ids = serde_json::from_str(r#"{"ids": [1, -2, 3.0]}"#).unwrap();
        assert_eq!(ids.ids, vec![1, -2, 3]);
        assert!(serde_json::from_str::<Ids>(r#"{"ids": [1.5]}"#).is_err());
        assert!(serde_json::from_str::<Ids>(r#"{"ids": [9223372036854775808]}"#).is_err());
    }
}
