//! The body of `POST /api/v1/players` and `PUT /api/v1/players/{id}`: OneSignal's Player model,
//! one shape for both, as OneSignal's SDKs send it. Serde refuses unknown fields and wrong types
//! (naming the field); [`super::validate`] refuses values out of range.
//!
//! What a request turns into is one message or a few, all of one app and so of one partition,
//! published in order: the subscription's own create or update first, then the link it asks for
//! (`email`, `parent_player_id`, or an email subscription's `device_player_id`) as an update of
//! the linked child.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::validate::{check_device, check_email, check_fields, check_tags, check_text, tags};
use crate::config::TagLimit;
use crate::message::{
    email_parent_id, Device, Fields, Message, NewPlayer, Update, EMAIL_DEVICE_TYPE,
};

/// A subscription as a client sends it (OneSignal's `Player`). On create `device_type` is
/// required; on update it is accepted and ignored (OneSignal's SDKs always send it), as are
/// `identifier` and the identity-verification hashes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerRequest {
    pub app_id: Uuid,
    /// 0 iOS, 1 Android, 2 Amazon, 3 Windows Phone, 4 Chrome extension, 5 Chrome web, 6 Windows,
    /// 7 Safari, 8 Firefox, 9 macOS, 10 Alexa, 11 email, 12 (unused), 13 Huawei, 14 SMS.
    #[schema(minimum = 0, maximum = 14)]
    pub device_type: Option<i32>,
    /// The push token; the address of an email subscription. Kept on create only.
    pub identifier: Option<String>,
    pub language: Option<String>,
    /// Seconds from UTC.
    #[schema(minimum = -43200, maximum = 50400)]
    pub timezone: Option<i32>,
    pub game_version: Option<String>,
    pub device_model: Option<String>,
    pub device_os: Option<String>,
    pub ad_id: Option<String>,
    pub sdk: Option<String>,
    #[schema(minimum = 0)]
    pub session_count: Option<i64>,
    /// Values: strings, numbers or booleans, stored as strings; `""` or `null` deletes the tag.
    #[schema(schema_with = super::validate::tags_schema)]
    pub tags: Option<BTreeMap<String, serde_json::Value>>,
    #[schema(minimum = 0)]
    pub amount_spent: Option<f64>,
    /// Unix seconds.
    #[schema(minimum = 0)]
    pub created_at: Option<i64>,
    #[schema(minimum = 0)]
    pub playtime: Option<i64>,
    #[schema(minimum = 0)]
    pub badge_count: Option<i64>,
    /// Unix seconds.
    #[schema(minimum = 0)]
    pub last_active: Option<i64>,
    pub notification_types: Option<i64>,
    pub test_type: Option<i64>,
    #[schema(minimum = -180, maximum = 180)]
    pub long: Option<f64>,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    /// ISO 3166 two-letter code.
    pub country: Option<String>,
    pub external_user_id: Option<String>,
    /// Identity verification: accepted and ignored (see docs/subscribers.md).
    pub external_user_id_auth_hash: Option<String>,
    /// Identity verification: accepted and ignored.
    pub email_auth_hash: Option<String>,
    /// Identity verification: accepted and ignored.
    pub identifier_auth_hash: Option<String>,
    /// Links this subscription to the app's email subscription of this address (created on the
    /// first link).
    pub email: Option<String>,
    /// Links this subscription to this email subscription of the app (OneSignal's way).
    pub parent_player_id: Option<Uuid>,
    /// On creating an email subscription (`device_type` 11): the device subscription to link
    /// to it (OneSignal's SDKs send this from `setEmail`).
    pub device_player_id: Option<Uuid>,
}

impl PlayerRequest {
    /// The messages creating a subscription: its create, then its link if it asks for one.
    /// An email subscription's id is derived from its address ([`email_parent_id`]), so that
    /// creating it again, or linking to it by `email`, names the same row.
    pub fn into_create(self, limit: &TagLimit) -> Result<(Uuid, Vec<Message>), Vec<String>> {
        let mut errors = Vec::new();
        let device_type = match self.device_type {
            Some(t) => t,
            None => {
                errors.push("device_type: required to create a subscription".into());
                0
            }
        };
        check_text("identifier", self.identifier.as_deref(), &mut errors);
        let email_device = device_type == EMAIL_DEVICE_TYPE;
        let identifier = if email_device {
            let address = self.identifier.as_deref().map(|e| e.trim().to_lowercase());
            match &address {
                Some(a) => check_email("identifier", a, &mut errors),
                None => {
                    errors.push("identifier: the address is required with device_type 11".into())
                }
            }
            address
        } else {
            if self.device_player_id.is_some() {
                errors.push(
                    "device_player_id: only for an email subscription (device_type 11)".into(),
                );
            }
            self.identifier.clone()
        };
        let app = self.app_id;
        let device_player = self.device_player_id;
        let (fields, tags, link) = self.checked(limit, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let id = match (&identifier, email_device) {
            (Some(address), true) => email_parent_id(app, address),
            _ => Uuid::new_v4(),
        };
        let mut messages = vec![Message::Create(NewPlayer {
            player_id: id,
            app_id: app,
            device_type,
            identifier,
            fields,
            tags: tags
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        })];
        if let Some(link) = link {
            messages.push(Message::Update(link.of(app, id)));
        }
        if let Some(device) = device_player {
            let link = Link {
                email: None,
                parent_player_id: Some(id),
            };
            messages.push(Message::Update(link.of(app, device)));
        }
        Ok((id, messages))
    }

    /// The update of subscription `id`, its link request included.
    pub fn into_update(self, id: Uuid, limit: &TagLimit) -> Result<Update, Vec<String>> {
        let mut errors = Vec::new();
        check_text("identifier", self.identifier.as_deref(), &mut errors);
        if self.device_player_id.is_some() {
            errors.push("device_player_id: only when creating an email subscription".into());
        }
        let app = self.app_id;
        let (fields, tags, link) = self.checked(limit, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let link = link.unwrap_or_default();
        Ok(Update {
            fields,
            tags,
            ..link.of(app, id)
        })
    }

    /// The fields, tags and link request, every problem added to `errors`.
    fn checked(
        self,
        limit: &TagLimit,
        errors: &mut Vec<String>,
    ) -> (Fields, BTreeMap<String, Option<String>>, Option<Link>) {
        if let Some(t) = self.device_type {
            if !(0..=14).contains(&t) {
                errors.push(format!(
                    "device_type: {t} is not a device type (0 iOS, 1 Android, 5 Chrome web, 11 email, 14 SMS, ...)"
                ));
            }
        }
        for (field, hash) in [
            (
                "external_user_id_auth_hash",
                &self.external_user_id_auth_hash,
            ),
            ("email_auth_hash", &self.email_auth_hash),
            ("identifier_auth_hash", &self.identifier_auth_hash),
        ] {
            check_text(field, hash.as_deref(), errors);
        }
        let fields = Fields {
            language: self.language,
            timezone: self.timezone,
            lat: self.lat,
            long: self.long,
            country: self.country.map(|c| c.to_ascii_uppercase()),
            external_user_id: self.external_user_id,
            device: Box::new(Device {
                game_version: self.game_version,
                device_model: self.device_model,
                device_os: self.device_os,
                ad_id: self.ad_id,
                sdk: self.sdk,
                session_count: self.session_count,
                amount_spent: self.amount_spent,
                created_at: self.created_at,
                playtime: self.playtime,
                badge_count: self.badge_count,
                last_active: self.last_active,
                notification_types: self.notification_types,
                test_type: self.test_type,
            }),
        };
        check_fields(&fields, errors);
        check_device(&fields.device, errors);
        let email = self.email.map(|e| e.trim().to_lowercase());
        if let Some(e) = &email {
            check_email("email", e, errors);
        }
        if email.is_some() && self.parent_player_id.is_some() {
            errors.push("parent_player_id: give it or email, not both".into());
        }
        let tags = check_tags(tags(self.tags.unwrap_or_default(), errors), limit, errors);
        let link = (email.is_some() || self.parent_player_id.is_some()).then_some(Link {
            email,
            parent_player_id: self.parent_player_id,
        });
        (fields, tags, link)
    }
}

/// A link request: to the email subscription of an address, or to one named by id.
#[derive(Debug, Default)]
struct Link {
    email: Option<String>,
    parent_player_id: Option<Uuid>,
}

impl Link {
    /// An update of `child` asking for this link, changing nothing else.
    fn of(self, app: Uuid, child: Uuid) -> Update {
        Update {
            player_id: child,
            app_id: app,
            fields: Fields::default(),
            tags: BTreeMap::new(),
            email: self.email,
            parent_player_id: self.parent_player_id,
        }
    }
}
