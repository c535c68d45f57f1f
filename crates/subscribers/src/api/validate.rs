//! The checks of the subscriber API's request bodies ([`super::request`]): values out of range
//! are refused, each message starting with the field's name. All problems of a request are
//! reported at once.

use std::collections::BTreeMap;

use crate::config::TagLimit;
use crate::message::{Device, Fields};

/// Longest tag key or value, in bytes.
pub const MAX_TAG_BYTES: usize = 128;
/// Most tags one request may set or delete.
pub const MAX_TAGS: usize = 1_024;
/// Longest free-text field (identifier, external user id), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// Why a string holding U+0000 is refused at the edge: PostgreSQL can store it neither in `text`
/// nor in `jsonb`, so the update would be acknowledged here and then fail in the consumer — an
/// acknowledged update lost to the dead-letter topic. (Found by the schemathesis fuzz run.)
pub const NUL_REFUSED: &str = "contains U+0000 (NUL), which cannot be stored";

/// `field: contains U+0000 …` when `value` holds a NUL character.
pub fn check_no_nul(field: &str, value: &str, errors: &mut Vec<String>) {
    if value.contains('\0') {
        errors.push(format!("{field}: {NUL_REFUSED}"));
    }
}

/// `field: … is not an email address` unless `address` (trimmed, lower case) looks like one.
pub fn check_email(field: &str, address: &str, errors: &mut Vec<String>) {
    let shape = address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.contains('@')
    });
    if !shape || address.len() > 254 || address.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        errors.push(format!("{field}: {address:?} is not an email address"));
    }
}

/// Tag values as the service stores them: strings as they are, numbers and booleans as their
/// JSON text (`5`, `1.5`, `true`), `null` as a deletion. Arrays and objects are refused.
pub fn tags(
    raw: BTreeMap<String, serde_json::Value>,
    errors: &mut Vec<String>,
) -> BTreeMap<String, Option<String>> {
    raw.into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    errors.push(format!(
                        "tags.{}: must be a string, a number, a boolean or null",
                        k.replace('\0', "\\0")
                    ));
                    None
                }
            };
            (k, value)
        })
        .collect()
}

/// The OpenAPI schema of `tags`: an object whose values are strings, numbers, booleans or null.
pub fn tags_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let value = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(utoipa::openapi::Schema::OneOf(value.build())))
        .build()
}

/// `field: …` for each device field out of range.
pub fn check_device(d: &Device, errors: &mut Vec<String>) {
    for (field, value) in [
        ("game_version", &d.game_version),
        ("device_model", &d.device_model),
        ("device_os", &d.device_os),
        ("ad_id", &d.ad_id),
        ("sdk", &d.sdk),
    ] {
        check_text(field, value.as_deref(), errors);
    }
    for (field, value) in [
        ("session_count", d.session_count),
        ("created_at", d.created_at),
        ("playtime", d.playtime),
        ("badge_count", d.badge_count),
        ("last_active", d.last_active),
    ] {
        if value.is_some_and(|v| v < 0) {
            errors.push(format!("{field}: must not be negative"));
        }
    }
    if d.amount_spent.is_some_and(|v| !(v >= 0.0 && v.is_finite())) {
        errors.push("amount_spent: must be a number of at least 0".into());
    }
}

pub fn check_text(field: &str, value: Option<&str>, errors: &mut Vec<String>) {
    if value.is_some_and(|v| v.len() > MAX_TEXT_BYTES) {
        errors.push(format!("{field}: longer than {MAX_TEXT_BYTES} bytes"));
    }
    if let Some(v) = value {
        check_no_nul(field, v, errors);
    }
}

pub fn check_fields(f: &Fields, errors: &mut Vec<String>) {
    if let Some(l) = &f.language {
        let ok =
            (2..=35).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            errors.push(format!(
                "language: {l:?} is not a language code such as \"en\" or \"pt-BR\""
            ));
        }
    }
    if f.timezone.is_some_and(|t| !(-43_200..=50_400).contains(&t)) {
        errors.push("timezone: must be an offset from UTC in seconds, -43200 to 50400".into());
    }
    match (f.lat, f.long) {
        (Some(_), None) => errors.push("long: required with lat".into()),
        (None, Some(_)) => errors.push("lat: required with long".into()),
        _ => {}
    }
    if f.lat.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
        errors.push("lat: must be between -90 and 90".into());
    }
    if f.long.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
        errors.push("long: must be between -180 and 180".into());
    }
    if let Some(c) = &f.country {
        if c.len() != 2 || !c.chars().all(|c| c.is_ascii_alphabetic()) {
            errors.push(format!("country: {c:?} is not a two-letter ISO 3166 code"));
        }
    }
    check_text("external_user_id", f.external_user_id.as_deref(), errors);
}

/// Tags with `""` turned into deletions, like `null`. The tags a request sets must fit in one
/// subscription (`limit`): a request that could never be applied is refused here, not
/// acknowledged and then dead-lettered.
pub fn check_tags(
    tags: BTreeMap<String, Option<String>>,
    limit: &TagLimit,
    errors: &mut Vec<String>,
) -> BTreeMap<String, Option<String>> {
    if tags.len() > MAX_TAGS {
        errors.push(format!(
            "tags: {} tags, at most {MAX_TAGS} per request",
            tags.len()
        ));
    }
    for (k, v) in &tags {
        if k.is_empty() {
            errors.push("tags: a tag key is empty".into());
        } else if k.len() > MAX_TAG_BYTES {
            let start: String = k.chars().take(16).collect();
            errors.push(format!(
                "tags: key {start:?}… is longer than {MAX_TAG_BYTES} bytes"
            ));
        }
        if v.as_ref().is_some_and(|v| v.len() > MAX_TAG_BYTES) {
            errors.push(format!(
                "tags.{k}: value is longer than {MAX_TAG_BYTES} bytes"
            ));
        }
        if k.contains('\0') {
            errors.push(format!("tags: a key {NUL_REFUSED}"));
        }
        if let Some(v) = v {
            check_no_nul(&format!("tags.{}", k.replace('\0', "\\0")), v, errors);
        }
    }
    let set = tags
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_deref().filter(|v| !v.is_empty())?)));
    if let Some(over) = limit.exceeded(set) {
        errors.push(format!("tags: sets {over}"));
    }
    tags.into_iter()
        .map(|(k, v)| (k, v.filter(|v| !v.is_empty())))
        .collect()
}
