use proptest::prelude::*;

use crate::{Engine, EngineConfig, RetryPolicy};

fn engine(base_backoff_ms: u64, max_backoff_ms: u64, seed: u64) -> Engine<()> {
    Engine::new(EngineConfig {
        retry: RetryPolicy {
            max_attempts: 5,
            base_backoff_ms,
            max_backoff_ms,
        },
        seed,
        ..EngineConfig::default()
    })
    .expect("a valid configuration")
}

proptest! {
    #[test]
    fn a_backoff_lies_between_zero_and_the_exponential_bound(
        base in 1u64..10_000,
        extra in 0u64..100_000,
        tries in 1u32..80,
        seed in 1u64..u64::MAX,
    ) {
        let max = base + extra;
        let mut e = engine(base, max, seed);
        let bound = base.saturating_mul(1 << (tries - 1).min(40)).min(max);
        for _ in 0..32 {
            let b = e.backoff(tries);
            prop_assert!(b <= bound, "{b} over {bound}");
        }
    }
}

#[test]
fn backoffs_spread_over_the_whole_window_not_only_its_upper_half() {
    // Full jitter: draws reach both ends of [0, bound]; equal jitter never goes below half.
    let mut e = engine(100, 30_000, 7);
    let bound = 800; // the fourth attempt: 100 * 2^3
    let draws: Vec<u64> = (0..2_000).map(|_| e.backoff(4)).collect();
    assert!(draws.iter().all(|&b| b <= bound));
    assert!(
        draws.iter().any(|&b| b < bound / 10),
        "none in the lowest tenth"
    );
    assert!(
        draws.iter().any(|&b| b > bound - bound / 10),
        "none in the highest tenth"
    );
}
