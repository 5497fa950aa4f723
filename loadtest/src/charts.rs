//! The run's charts as SVG files (plotters): latency and throughput over
//! time, and, for a ramp, latency percentiles against the offered rate.

#![allow(clippy::float_arithmetic, reason = "chart coordinates, never money")]

use std::path::Path;

use plotters::prelude::*;

/// A named line: (x, y) points.
pub struct Line<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(214, 39, 40), BLACK];

/// Draws `lines` on one chart to `path`.
pub fn draw(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line<'_>],
) -> anyhow::Result<()> {
    let points = || lines.iter().flat_map(|line| line.points.iter());
    let x_max = points().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_max = points().map(|(_, y)| *y).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (line, colour) in lines.iter().zip(COLOURS.iter().cycle()) {
        let style = ShapeStyle::from(colour).stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(line.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_title_and_legend() {
        let dir = std::env::temp_dir().join(format!("payhub-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("chart.svg");
        let line = Line { name: "p99", points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)] };
        draw(&path, "latency over time", "seconds", "ms", &[line]).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("latency over time") && svg.contains("p99"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
