//! The report folder: `report.md` (a table of figures per comparison), `results.json` (the same
//! figures with every repetition, and the plotted series) and one PNG per plot.
//!
//! - [`markdown`]: the table, targets met or not;
//! - [`plot`]: line charts with an embedded font, so that no system font is needed.

pub mod markdown;
pub mod plot;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stats::median;

/// One measured figure: the median of its repetitions, and how it compares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// The comparison it belongs to, e.g. `overhead`.
    pub comparison: String,
    /// What was measured, e.g. `kafkaesque (no-op handler)`.
    pub variant: String,
    /// Unit of `median` and `samples`, e.g. `records/s`.
    pub unit: String,
    /// NaN when there was nothing to measure (a replay that saw none of the records it times).
    #[serde(deserialize_with = "nan_as_null::one")]
    pub median: f64,
    /// Every repetition, in the order they ran.
    #[serde(deserialize_with = "nan_as_null::many")]
    pub samples: Vec<f64>,
    pub ratio: Option<Ratio>,
    pub target: Option<Target>,
    /// Anything the number alone does not say.
    pub note: Option<String>,
}

/// This figure divided by another of the same run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// The variant it is divided by.
    pub vs: String,
    #[serde(deserialize_with = "nan_as_null::one")]
    pub value: f64,
}

/// JSON has no NaN: serde_json writes one as `null`, and these read a `null` back as NaN, so that
/// `results.json` always reads back, whatever a run measured.
mod nan_as_null {
    use serde::{Deserialize, Deserializer};

    pub(super) fn one<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub(super) fn many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let values = Vec::<Option<f64>>::deserialize(d)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

/// What the figure should reach, and whether it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Figure {
    /// The median of `samples`.
    pub fn new(comparison: &str, variant: &str, unit: &str, samples: Vec<f64>) -> Self {
        Figure {
            comparison: comparison.to_owned(),
            variant: variant.to_owned(),
            unit: unit.to_owned(),
            median: median(&samples),
            samples,
            ratio: None,
            target: None,
            note: None,
        }
    }

    /// Adds the ratio of this median to `baseline`'s.
    pub fn vs(mut self, baseline: &Figure) -> Self {
        self.ratio = Some(Ratio {
            vs: baseline.variant.clone(),
            value: self.median / baseline.median,
        });
        self
    }

    /// Adds a target: met when the ratio (or, without one, the median) is at least `at_least`.
    pub fn at_least(mut self, text: &str, at_least: f64) -> Self {
        let value = self.ratio.as_ref().map_or(self.median, |r| r.value);
        self.target = Some(Target {
            text: text.to_owned(),
            met: value >= at_least,
        });
        self
    }

    /// Adds a target: met when the ratio (or, without one, the median) is at most `at_most`.
    pub fn at_most(mut self, text: &str, at_most: f64) -> Self {
        let value = self.ratio.as_ref().map_or(self.median, |r| r.value);
        self.target = Some(Target {
            text: text.to_owned(),
            met: value <= at_most,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// One line of a plot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    /// The plot it is drawn in: also the PNG's file name, without `.png`.
    pub plot: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// The line's name in the legend.
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Everything one `kafkaesque bench` run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// `smoke`, `quick` or `full`.
    pub mode: String,
    /// When the run started (seconds since the epoch).
    pub started_unix: u64,
    /// How long the whole run took.
    pub duration_s: f64,
    pub figures: Vec<Figure>,
    pub series: Vec<Series>,
    /// Comparisons that could not run, and why.
    pub failures: Vec<String>,
}

impl Report {
    /// Writes `report.md`, `results.json` and the plots into `dir` (created if missing) and
    /// returns the paths written.
    ///
    /// # Errors
    /// When a file cannot be written or a plot cannot be drawn.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let plots = plot::draw_all(&self.series, dir)?;
        let md = dir.join("report.md");
        std::fs::write(&md, markdown::render(self, &plots))?;
        let json = dir.join("results.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)?;
        let mut written = vec![md, json];
        written.extend(plots);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_with_nothing_measured_reads_back_from_json() {
        let figure = Figure::new(
            "incident replay",
            "Divert: other apps p99",
            "ms",
            vec![f64::NAN],
        );
        let json = serde_json::to_string(&figure).unwrap();
        let back: Figure = serde_json::from_str(&json).unwrap();
        assert!(back.median.is_nan() && back.samples[0].is_nan(), "{json}");
    }
}
