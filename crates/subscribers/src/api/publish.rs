//! Writing to Kafka from a request: refused for an app on the skip list, bounded in time, and
//! answered only once Kafka has acknowledged the write.

use super::error::ApiError;
use super::AppState;
use crate::message::Message;

/// Refuses a write of an app the operator has put on the skip list (403), rather than
/// acknowledging what the consumer would then drop. The list is this process's copy, read from
/// the database twice a second: a write in that half second is acknowledged, and skipped.
pub(super) fn not_skipped(s: &AppState, app: uuid::Uuid) -> Result<(), ApiError> {
    if s.skips.app_skipped(app) {
        metrics::counter!("subscribers_writes_refused_skipped_total").increment(1);
        return Err(ApiError::forbidden(format!(
            "app_id: the operator has suspended writes of app {app} (skip list); nothing was written"
        )));
    }
    Ok(())
}

/// Writes `message` and waits for Kafka's acknowledgement.
pub(super) async fn publish(s: &AppState, message: &Message) -> Result<(), ApiError> {
    let producer = s
        .producer
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this process runs no API"))?;
    // Right after start the topic may still be on its way: wait a little rather than refuse.
    // The wait and the write together take at most `write_timeout`: with Kafka unreachable the
    // client hears 503 then, not when librdkafka gives up.
    let mut ready = s.topic_ready.clone();
    let write = async {
        if !ready.wait_for(|r| *r).await.is_ok_and(|r| *r) {
            return Err(ApiError::kafka("the service is stopping"));
        }
        producer.send(message).await.map_err(ApiError::kafka)
    };
    match tokio::time::timeout(s.config.write_timeout, write).await {
        Ok(sent) => sent.map(drop),
        Err(_) if !*s.topic_ready.borrow() => Err(ApiError::kafka(format!(
            "topic {} is not ready within {:?}",
            s.config.topic, s.config.write_timeout
        ))),
        Err(_) => Err(ApiError::kafka(format!(
            "no acknowledgement within {:?}",
            s.config.write_timeout
        ))),
    }
}
