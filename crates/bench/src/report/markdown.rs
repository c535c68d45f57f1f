//! `report.md`: one table per comparison, in the order they ran, then the plots.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Figure, Report};

/// The report as Markdown; `plots` are linked by file name (they sit beside it).
pub fn render(report: &Report, plots: &[PathBuf]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# kafkaesque bench ({})\n", report.mode);
    let _ = writeln!(
        md,
        "Run took {:.0} s. Every figure is the median of its repetitions (all of them are in \
         `results.json`); every ratio is against a baseline measured in the same run.\n",
        report.duration_s
    );
    let mut comparisons: Vec<&str> = Vec::new();
    for f in &report.figures {
        if !comparisons.contains(&f.comparison.as_str()) {
            comparisons.push(&f.comparison);
        }
    }
    for c in comparisons {
        let _ = writeln!(md, "## {c}\n");
        md.push_str("| variant | median | unit | runs | ratio | target | met |\n");
        md.push_str("|---|---:|---|---:|---|---|---|\n");
        let mut notes = Vec::new();
        for f in report.figures.iter().filter(|f| f.comparison == c) {
            md.push_str(&row(f));
            if let Some(n) = &f.note {
                notes.push(format!("- {}: {n}", f.variant));
            }
        }
        if !notes.is_empty() {
            md.push('\n');
            md.push_str(&notes.join("\n"));
            md.push('\n');
        }
        md.push('\n');
    }
    if !report.failures.is_empty() {
        md.push_str("## Did not run\n\n");
        for f in &report.failures {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    if !plots.is_empty() {
        md.push_str("## Plots\n\n");
        for p in plots {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                let _ = writeln!(md, "![{name}]({name})\n");
            }
        }
    }
    md
}

fn row(f: &Figure) -> String {
    let ratio = f
        .ratio
        .as_ref()
        .map_or(String::new(), |r| format!("{:.2}× {}", r.value, r.vs));
    let (target, met) = f.target.as_ref().map_or((String::new(), ""), |t| {
        (t.text.clone(), if t.met { "yes" } else { "**no**" })
    });
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        f.variant,
        number(f.median),
        f.unit,
        f.samples.len(),
        ratio,
        target,
        met
    )
}

/// Big numbers without decimals, small ones with a few.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        "–".to_owned()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_per_comparison_with_ratio_and_target() {
        let base = Figure::new("overhead", "raw", "records/s", vec![100.0, 90.0, 110.0]);
        let ours = Figure::new("overhead", "ours", "records/s", vec![95.0, 80.0, 99.0])
            .vs(&base)
            .at_least("≥ 0.9×", 0.9);
        let report = Report {
            mode: "smoke".into(),
            started_unix: 0,
            duration_s: 1.0,
            figures: vec![base, ours],
            series: vec![],
            failures: vec!["http: no server".into()],
        };
        let md = render(&report, &[PathBuf::from("/x/lag.png")]);
        assert!(md.contains("## overhead"), "{md}");
        assert!(
            md.contains("| ours | 95.00 | records/s | 3 | 0.95× raw | ≥ 0.9× | yes |"),
            "{md}"
        );
        assert!(md.contains("- http: no server"), "{md}");
        assert!(md.contains("![lag.png](lag.png)"), "{md}");
    }
}
