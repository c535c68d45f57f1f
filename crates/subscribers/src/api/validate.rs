//! The request bodies of the subscriber API and their checks. Serde refuses unknown fields and
//! wrong types (naming the field); the checks here refuse values out of range, each message
//! starting with the field's name. All problems of a request are reported at once.

use std::collections::BTreeMap;

use serde::Deserialize;
use uuid::Uuid;

use crate::config::TagLimit;
use crate::message::{Fields, NewPlayer, Update};

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

/// Body of `POST /api/v1/players`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlayerRequest {
    pub app_id: Uuid,
    pub device_type: i32,
    pub identifier: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<i32>,
    pub tags: Option<BTreeMap<String, Option<String>>>,
    pub external_user_id: Option<String>,
}

/// Body of `PUT /api/v1/players/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub app_id: Uuid,
    pub tags: Option<BTreeMap<String, Option<String>>>,
    pub language: Option<String>,
    pub timezone: Option<i32>,
    pub lat: Option<f64>,
    pub long: Option<f64>,
    pub country: Option<String>,
    pub external_user_id: Option<String>,
    pub email: Option<String>,
}

impl NewPlayerRequest {
    /// The create message for a subscription with the id the edge chose.
    pub fn into_message(self, player_id: Uuid, limit: &TagLimit) -> Result<NewPlayer, Vec<String>> {
        let mut errors = Vec::new();
        if !(0..=14).contains(&self.device_type) {
            errors.push(format!(
                "device_type: {} is not a device type (0 iOS, 1 Android, 5 Chrome web, 11 email, 14 SMS, ...)",
                self.device_type
            ));
        }
        check_text("identifier", self.identifier.as_deref(), &mut errors);
        let fields = Fields {
            language: self.language,
            timezone: self.timezone,
            external_user_id: self.external_user_id,
            ..Fields::default()
        };
        check_fields(&fields, &mut errors);
        let tags = check_tags(self.tags.unwrap_or_default(), limit, &mut errors)
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewPlayer {
            player_id,
            app_id: self.app_id,
            device_type: self.device_type,
            identifier: self.identifier,
            fields,
            tags,
        })
    }
}

impl UpdateRequest {
    /// The update message; `limit` bounds the tags it sets (a subscription can hold no more).
    pub fn into_message(self, player_id: Uuid, limit: &TagLimit) -> Result<Update, Vec<String>> {
        let mut errors = Vec::new();
        let fields = Fields {
            language: self.language,
            timezone: self.timezone,
            lat: self.lat,
            long: self.long,
            country: self.country.map(|c| c.to_ascii_uppercase()),
            external_user_id: self.external_user_id,
        };
        check_fields(&fields, &mut errors);
        let email = self.email.map(|e| e.trim().to_lowercase());
        if let Some(e) = &email {
            let shape = e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            });
            if !shape || e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(format!("email: {e:?} is not an email address"));
            }
        }
        let tags = check_tags(self.tags.unwrap_or_default(), limit, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Update {
            player_id,
            app_id: self.app_id,
            fields,
            tags,
            email,
        })
    }
}

fn check_text(field: &str, value: Option<&str>, errors: &mut Vec<String>) {
    if value.is_some_and(|v| v.len() > MAX_TEXT_BYTES) {
        errors.push(format!("{field}: longer than {MAX_TEXT_BYTES} bytes"));
    }
    if let Some(v) = value {
        check_no_nul(field, v, errors);
    }
}

fn check_fields(f: &Fields, errors: &mut Vec<String>) {
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
fn check_tags(
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
