//! The replays' figures and plots.

use super::lag::LagPoint;
use super::worker::Variant;
use super::{Replay, Sizes};
use crate::report::{Figure, Series};
use crate::stats::quantile;

/// The figures and plots of the four replays; the first is the baseline.
pub(super) fn summarize(replays: &[Replay], sizes: Sizes) -> (Vec<Figure>, Vec<Series>) {
    const C: &str = "incident replay";
    let p = |r: &Replay, q: f64| quantile(&r.other_delays_ms, q);
    let base = &replays[0];
    let base_p99 =
        Figure::new(C, "baseline: other apps p99", "ms", vec![p(base, 0.99)]).note(format!(
            "the other apps' traffic alone ({:.0} updates/s for {:.0} s), the service's consumer; \
             the flood: {:.0}% of {:.0} updates/s from one app, {} subscriptions in {} apps, \
             hot parent row write {} ms; produced in batches of up to {} ms; one run each",
            sizes.rate * (1.0 - sizes.flood_share),
            sizes.seconds,
            sizes.flood_share * 100.0,
            sizes.rate,
            sizes.subscriptions,
            sizes.apps,
            sizes.hot_write_ms,
            super::PRODUCER_LINGER_MS,
        ));
    let mut figures = vec![
        Figure::new(C, "baseline: other apps p50", "ms", vec![p(base, 0.5)]),
        base_p99.clone(),
    ];
    for (i, r) in replays.iter().enumerate() {
        let name = |what: &str| format!("{}: {what}", short(r.label));
        let kafkaesque = r.label.starts_with("kafkaesque");
        if i > 0 {
            figures.push(Figure::new(
                C,
                &name("other apps p50"),
                "ms",
                vec![p(r, 0.5)],
            ));
            let mut p99 =
                Figure::new(C, &name("other apps p99"), "ms", vec![p(r, 0.99)]).vs(&base_p99);
            if r.other_unapplied > 0 {
                p99 = p99.note(format!(
                    "{} of {} updates never applied, counted as applied at the end (a lower bound)",
                    r.other_unapplied,
                    r.other_delays_ms.len()
                ));
            }
            figures.push(if kafkaesque {
                p99.at_most("≤ 1.5× baseline", 1.5)
            } else {
                p99
            });
        }
        let peak = r.lag.iter().map(|l| l.messages).max().unwrap_or(0);
        let mut lag = Figure::new(C, &name("peak lag"), "messages", vec![peak as f64]);
        lag = match (r.drained_after, &r.crashed) {
            (_, Some(why)) => lag.note(why.clone()),
            (Some(s), None) => lag.note(format!("drained {s:.1} s after the traffic stopped")),
            (None, None) => lag.note(format!(
                "not drained {:.0} s after the traffic stopped",
                sizes.drain_seconds
            )),
        };
        figures.push(lag);
        let rss = r
            .peak_rss_bytes
            .map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
        figures.push(Figure::new(C, &name("consumer peak RSS"), "MiB", vec![rss]));
    }
    let line = |r: &Replay, plot: &str, y: &str, f: fn(&LagPoint) -> f64| Series {
        plot: plot.to_owned(),
        title: format!("Incident replay: consumer lag ({y})"),
        x_label: "seconds since the traffic started".to_owned(),
        y_label: y.to_owned(),
        name: r.label.to_owned(),
        points: r.lag.iter().map(|l| (l.t_s, f(l))).collect(),
    };
    let mut series = Vec::new();
    for r in replays {
        series.push(line(r, "incident_lag_messages", "messages", |l| {
            l.messages as f64
        }));
    }
    for r in replays {
        series.push(line(r, "incident_lag_seconds", "seconds", |l| l.seconds));
    }
    // The same without the legacy design, whose climb flattens every other line to the axis.
    for r in replays
        .iter()
        .filter(|r| r.label != Variant::Legacy.label())
    {
        let mut zoomed = line(r, "incident_lag_seconds_kafkaesque", "seconds", |l| {
            l.seconds
        });
        zoomed.title = "Incident replay: consumer lag (seconds), without the legacy design".into();
        series.push(zoomed);
    }
    (figures, series)
}

fn short(label: &str) -> &str {
    label.strip_prefix("kafkaesque ").unwrap_or(label)
}
