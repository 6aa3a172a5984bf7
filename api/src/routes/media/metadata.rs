//! App metadata on a media: string values by key, bounded like Stripe's (50 keys, keys of 40
//! characters, values of 500), so it stays a few KB and one GIN containment answers a filter.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Keys a media's metadata may hold.
pub const MAX_KEYS: i32 = 50;
/// The longest key, in characters.
const MAX_KEY_CHARS: usize = 40;
/// The longest value, in characters.
const MAX_VALUE_CHARS: usize = 500;

/// Whether `key` may name a metadata entry: 1 to 40 of `A-Z a-z 0-9 _ - .`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= MAX_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `value` may be a metadata value: at most 500 characters, none a control character.
pub fn valid_value(value: &str) -> bool {
    value.chars().count() <= MAX_VALUE_CHARS && !value.chars().any(char::is_control)
}

/// Checks a patch: each value a string of at most 500 characters, or `null` to remove the key.
pub fn check_patch(patch: &Map<String, Value>) -> Result<(), ApiError> {
    if patch.len() > MAX_KEYS as usize {
        return Err(invalid(format!("at most {MAX_KEYS} keys")));
    }
    for (key, value) in patch {
        if !valid_key(key) {
            return Err(invalid(format!(
                "key {key:?}: 1 to {MAX_KEY_CHARS} of A-Z, a-z, 0-9, _, - and ."
            )));
        }
        match value {
            Value::Null => {}
            Value::String(text) if text.chars().count() <= MAX_VALUE_CHARS => {
                if text.chars().any(char::is_control) {
                    return Err(invalid(format!("{key:?}: no control characters")));
                }
            }
            Value::String(_) => {
                return Err(invalid(format!(
                    "{key:?}: values are at most {MAX_VALUE_CHARS} characters"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "{key:?}: values are strings (or null to remove the key)"
                )));
            }
        }
    }
    Ok(())
}

pub fn invalid(message: String) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_metadata",
        message,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(value: Value) -> Result<(), ApiError> {
        check_patch(value.as_object().expect("object"))
    }

    #[test]
    fn strings_and_nulls_pass_and_everything_else_is_refused() {
        assert!(check(json!({ "contact": "42", "role": null, "a.b-c_d": "" })).is_ok());
        assert!(check(json!({ "contact": 42 })).is_err());
        assert!(check(json!({ "x": { "y": "z" } })).is_err());
        assert!(check(json!({ "": "x" })).is_err());
        assert!(check(json!({ "a b": "x" })).is_err());
        assert!(check(json!({ "x": "a\u{0}b" })).is_err());
        assert!(check(json!({ "x": "é".repeat(500) })).is_ok());
        assert!(check(json!({ "x": "é".repeat(501) })).is_err());
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(check_patch(&many).is_err());
    }
}
