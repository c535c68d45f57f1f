//! Per-app rate limits at the HTTP edge: a token bucket per app (governor's keyed limiter), with
//! the configured default and per-app overrides. An app over its rate is answered 429 with
//! `Retry-After`, before its body is read further or anything is written, so one app's flood
//! costs the others nothing but the refusals. Every app's accepted and refused requests are
//! counted (`subscribers_app_requests_accepted_total`, `..._refused_total`, label `app_id`).
//!
//! Only requests with a valid key reach a bucket, so there is one bucket per real app at most.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use super::error::ApiError;
use crate::config::RateLimit;
use crate::Config;

/// The buckets of every app.
#[derive(Clone)]
pub struct Limits {
    default: RateLimit,
    shared: Arc<DefaultKeyedRateLimiter<Uuid>>,
    own: Arc<HashMap<Uuid, (RateLimit, DefaultDirectRateLimiter)>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("default", &self.default)
            .field("apps_with_their_own", &self.own.len())
            .finish()
    }
}

fn quota(limit: RateLimit) -> Quota {
    let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(n(limit.per_second)).allow_burst(n(limit.burst))
}

impl Limits {
    pub fn new(config: &Config) -> Self {
        let clock = DefaultClock::default();
        let own = config
            .rate_limits
            .iter()
            .map(|(app, limit)| {
                let bucket = RateLimiter::direct_with_clock(quota(*limit), clock.clone());
                (*app, (*limit, bucket))
            })
            .collect();
        Limits {
            default: config.rate_limit,
            shared: Arc::new(RateLimiter::dashmap_with_clock(
                quota(config.rate_limit),
                clock.clone(),
            )),
            own: Arc::new(own),
            clock,
        }
    }

    /// Takes a token from `app`'s bucket: 429 naming the limit when it is empty.
    pub fn check(&self, app: Uuid) -> Result<(), ApiError> {
        let (limit, outcome) = match self.own.get(&app) {
            Some((limit, bucket)) => (*limit, bucket.check()),
            None => (self.default, self.shared.check_key(&app)),
        };
        let label = app.to_string();
        match outcome {
            Ok(()) => {
                metrics::counter!("subscribers_app_requests_accepted_total", "app_id" => label)
                    .increment(1);
                Ok(())
            }
            Err(not_until) => {
                metrics::counter!("subscribers_app_requests_refused_total", "app_id" => label)
                    .increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "rate limit: app {app} may send {} requests per second (bursts of {}); \
                         retry after {seconds} s",
                        limit.per_second, limit.burst
                    ),
                )
                .retry_after(seconds))
            }
        }
    }

    /// Forgets the buckets that are full again, so that apps gone quiet take no memory.
    pub fn shrink(&self) {
        self.shared.retain_recent();
        self.shared.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_app_has_its_own_bucket_and_an_override_its_own_size() {
        let (busy, quiet, special) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let config = Config {
            rate_limit: RateLimit {
                per_second: 1,
                burst: 3,
            },
            rate_limits: [(
                special,
                RateLimit {
                    per_second: 1,
                    burst: 10,
                },
            )]
            .into(),
            ..Config::default()
        };
        let limits = Limits::new(&config);
        let passed = |app| (0..20).filter(|_| limits.check(app).is_ok()).count();
        assert_eq!(passed(busy), 3);
        assert_eq!(
            passed(quiet),
            3,
            "the busy app's flood left the quiet one's bucket"
        );
        assert_eq!(passed(special), 10);
        let refused = limits.check(busy).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        assert!(
            refused.errors[0].contains("1 requests per second"),
            "{refused:?}"
        );
    }
}
