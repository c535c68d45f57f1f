//! The bodies the subscriber API answers with, as OneSignal's are: `{"success": true, "id": …}`,
//! `{"success": true}`, `{"errors": [...]}`, and a page of subscriptions.

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::PlayerView;

/// A subscription was created.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub success: bool,
    pub id: Uuid,
}

/// A write was acknowledged.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    pub success: bool,
}

impl Success {
    pub fn yes() -> Self {
        Success { success: true }
    }
}

/// Every refusal: one message per problem, each naming the field or the problem first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Errors {
    pub errors: Vec<String>,
}

/// `GET /api/v1/players`: one page of an app's subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerPage {
    /// The app's subscriptions in all.
    pub total_count: i64,
    pub offset: i64,
    pub limit: i64,
    pub players: Vec<PlayerView>,
}
