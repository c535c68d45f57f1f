//! The legacy system's incident, simulated: one key receives a quarter of all records and its writes are
//! twenty times slower. Only qualitative invariants are asserted here; the figures (rates,
//! delays, the lag curve) are printed by `cargo bench -p kafkaesque-engine --bench incident`.

use kafkaesque_engine::sim::{self, Report, Scenario};

const CONCURRENCY: usize = 200;

fn lag_while_producing(r: &Report, s: &Scenario) -> Vec<u64> {
    r.lag
        .iter()
        .take((s.duration_ms / 1000) as usize)
        .map(|(_, l)| *l)
        .collect()
}

#[test]
fn a_hot_key_slows_only_itself_under_coalesce_and_divert() {
    let scenario = Scenario::incident(4_000);
    for (name, cfg) in sim::incident_configs(CONCURRENCY).into_iter().skip(1) {
        let r = sim::run(cfg, &scenario);
        assert_eq!(
            r.other_completed, r.other_produced,
            "{name}: ordinary records left behind"
        );
        for (second, adv) in r.min_watermark_advance.iter().take(4).enumerate() {
            assert!(
                *adv > 0,
                "{name}: a partition's commits stood still in second {second}"
            );
        }
        // Lag does not climb: it stays at what one slow write of the hot key holds back.
        let lag = lag_while_producing(&r, &scenario);
        assert!(
            lag.last() <= Some(&(2 * lag[0])),
            "{name}: lag climbs: {lag:?}"
        );
        // Ordinary keys never queue behind the hot one.
        let worst = r.other_delay_quantile(1.0);
        assert!(
            worst < scenario.hot_latency_ms,
            "{name}: an ordinary record waited {worst} ms"
        );
    }
}

#[test]
fn the_legacy_design_stalls_on_the_same_traffic() {
    let scenario = Scenario::incident(4_000);
    let (name, cfg) = sim::incident_configs(CONCURRENCY).remove(0);
    assert_eq!(name, "legacy design");
    let r = sim::run(cfg, &scenario);
    let lag = lag_while_producing(&r, &scenario);
    assert!(
        lag.windows(2).all(|w| w[1] > w[0]),
        "the legacy design's lag did not climb: {lag:?}"
    );
    assert!(
        r.other_completed < r.other_produced,
        "ordinary records all done despite the stall"
    );
}
