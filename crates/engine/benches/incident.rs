//! Prints the incident replay figures: per design, the ordinary keys' completion and delay, the
//! commit lag over time, and the peak of records held. Not a test: nothing here asserts.

use kafkaesque_engine::sim::{self, Scenario};

fn main() {
    let scenario = Scenario::incident(10_000);
    let concurrency = 200;
    let base_cfg = sim::incident_configs(concurrency).remove(1).1;
    let base = sim::run(base_cfg, &scenario.without_hot_key());
    let base_rate = base.other_completed as f64 / (scenario.duration_ms as f64 / 1000.0);
    println!("incident replay (simulated): {scenario:?}, concurrency {concurrency}");
    println!(
        "{:<22} {:>12} {:>10} {:>9} {:>9} {:>10}  lag per second",
        "design", "other done", "vs base", "p50 ms", "p99 ms", "peak held"
    );
    let row = |name: &str, r: &sim::Report| {
        let rate = r.other_completed as f64 / (scenario.duration_ms as f64 / 1000.0);
        let lag: Vec<String> = r.lag.iter().take(12).map(|(_, l)| l.to_string()).collect();
        println!(
            "{:<22} {:>12} {:>9.2}x {:>9} {:>9} {:>10}  {}",
            name,
            r.other_completed,
            rate / base_rate,
            r.other_delay_quantile(0.5),
            r.other_delay_quantile(0.99),
            r.peak_held,
            lag.join(" ")
        );
    };
    row("no hot key (baseline)", &base);
    for (name, cfg) in sim::incident_configs(concurrency) {
        row(name, &sim::run(cfg, &scenario));
    }
}
