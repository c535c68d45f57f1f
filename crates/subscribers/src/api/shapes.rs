//! The bodies the subscriber API answers with, as OneSignal's are: `{"success": true, "id": …}`,
//! `{"success": true}`, `{"errors": [...]}`, and a page of subscriptions.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};
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

/// What every app endpoint may refuse with, for the OpenAPI document: the refusals of the edge
/// (408, 429, 503) and of the key (401, 403), and a request that is wrong (400).
#[derive(Debug, IntoResponses)]
pub enum AppRefusals {
    #[response(
        status = 400,
        description = "A field or parameter is wrong; the message names it"
    )]
    BadRequest(Errors),
    #[response(status = 401, description = "No valid app key")]
    Unauthorized(Errors),
    #[response(
        status = 403,
        description = "The key is of another app, or the operator has suspended the app's writes"
    )]
    Forbidden(Errors),
    #[response(
        status = 408,
        description = "The request took longer than the edge allows"
    )]
    Timeout(Errors),
    #[response(status = 429, description = "The app's rate limit; see Retry-After")]
    RateLimited(Errors),
    #[response(
        status = 503,
        description = "Kafka did not acknowledge, the database is out of reach, or the service is saturated; see Retry-After"
    )]
    Unavailable(Errors),
}

/// What every admin endpoint may refuse with, for the OpenAPI document.
#[derive(Debug, IntoResponses)]
pub enum AdminRefusals {
    #[response(status = 401, description = "No valid admin token")]
    Unauthorized(Errors),
    #[response(
        status = 403,
        description = "Admin endpoints are disabled (no token configured)"
    )]
    Forbidden(Errors),
    #[response(
        status = 408,
        description = "The request took longer than the edge allows"
    )]
    Timeout(Errors),
    #[response(
        status = 503,
        description = "The database is out of reach, or the service is saturated"
    )]
    Unavailable(Errors),
}
