//! Line charts as PNG, one per plot name, every series of that name a line.
//!
//! The font is DejaVu Sans from the `dejavu` crate, registered with plotters' `ab_glyph`
//! backend: plotters' default text backend asks fontconfig for system fonts, which a fresh CI
//! machine need not have.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::Series;

const SIZE: (u32, u32) = (900, 500);

/// Line colours, in legend order: dark enough to read on white.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws every plot named in `series` into `dir`, returns the files written.
///
/// # Errors
/// When a PNG cannot be drawn or written.
pub fn draw_all(series: &[Series], dir: &Path) -> Result<Vec<PathBuf>> {
    register();
    let mut names: Vec<&str> = Vec::new();
    for s in series {
        if !names.contains(&s.plot.as_str()) {
            names.push(&s.plot);
        }
    }
    let mut written = Vec::new();
    for name in names {
        let lines: Vec<&Series> = series.iter().filter(|s| s.plot == name).collect();
        let path = dir.join(format!("{name}.png"));
        draw(&lines, &path).map_err(|e| anyhow!("plot {name}: {e}"))?;
        written.push(path);
    }
    Ok(written)
}

fn register() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        if register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            unreachable!("DejaVu Sans is a valid font");
        }
    });
}

fn draw(lines: &[&Series], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let first = lines[0];
    let points = lines.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
    for (x, y) in points {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    let (x_max, y_max) = (x_max.max(1.0), (y_max * 1.1).max(1.0));

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&first.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(first.x_label.as_str())
        .y_desc(first.y_label.as_str())
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, s) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_per_plot() {
        let dir = std::env::temp_dir().join(kafkaesque_testkit::unique_name("plot"));
        let line = |plot: &str, name: &str| Series {
            plot: plot.into(),
            title: "lag".into(),
            x_label: "s".into(),
            y_label: "messages".into(),
            name: name.into(),
            points: vec![(0.0, 0.0), (1.0, 5.0), (2.0, 3.0)],
        };
        std::fs::create_dir_all(&dir).unwrap();
        let written = draw_all(&[line("a", "x"), line("a", "y"), line("b", "x")], &dir).unwrap();
        assert_eq!(written.len(), 2);
        for p in &written {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", p.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
