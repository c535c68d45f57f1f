//! What a device reports about itself, as OneSignal's Player model carries it.

use serde::{Deserialize, Serialize};

/// What the device and the app report about themselves (OneSignal's Player model). The service
/// only keeps and shows them: none of them decides how an update is applied, so they live in one
/// `jsonb` column (`players.device`), merged key by key, last writer winning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_spent: Option<f64>,
    /// Unix seconds: when the user joined, as the app reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playtime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub badge_count: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_types: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_type: Option<i64>,
}

impl Device {
    /// Last writer wins, field by field.
    pub fn overwrite_with(&mut self, newer: Device) {
        let Device {
            game_version,
            device_model,
            device_os,
            ad_id,
            sdk,
            session_count,
            amount_spent,
            created_at,
            playtime,
            badge_count,
            last_active,
            notification_types,
            test_type,
        } = newer;
        self.game_version = game_version.or(self.game_version.take());
        self.device_model = device_model.or(self.device_model.take());
        self.device_os = device_os.or(self.device_os.take());
        self.ad_id = ad_id.or(self.ad_id.take());
        self.sdk = sdk.or(self.sdk.take());
        self.session_count = session_count.or(self.session_count);
        self.amount_spent = amount_spent.or(self.amount_spent);
        self.created_at = created_at.or(self.created_at);
        self.playtime = playtime.or(self.playtime);
        self.badge_count = badge_count.or(self.badge_count);
        self.last_active = last_active.or(self.last_active);
        self.notification_types = notification_types.or(self.notification_types);
        self.test_type = test_type.or(self.test_type);
    }

    /// The fields set, as the `jsonb` object the database merges into the row's.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a device always serializes")
    }

    /// The stored object back; keys it does not know are left out.
    pub fn from_json(value: serde_json::Value) -> Device {
        serde_json::from_value(value).unwrap_or_default()
    }
}
