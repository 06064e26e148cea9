//! The report's plots, as SVG text (plotters' SVG backend: text stays text, no fonts needed).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const SIZE: (u32, u32) = (560, 400);

/// Turns a plotters error into an anyhow one.
fn drawn<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T> {
    result.map_err(|e| anyhow!("drawing a plot: {e}"))
}

/// The color of an accuracy (%): from red (0) through yellow to green (100).
fn heat(value: f64) -> RGBColor {
    let v = (value / 100.0).clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (230.0, 60.0 + 340.0 * v)
    } else {
        (230.0 - 360.0 * (v - 0.5), 230.0)
    };
    RGBColor(r as u8, g as u8, 80)
}

/// A plot of `SIZE` on a white page, as SVG text: `draw` gets a chart builder with the report's
/// caption (`title`), margin and label areas (`y_label_area` pixels for the y axis's labels).
fn plot(title: &str, y_label_area: u32, draw: impl FnOnce(ChartBuilder<SVGBackend>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(y_label_area);
        draw(builder)?;
        drawn(root.present())?;
    }
    Ok(svg)
}

/// An accuracy matrix (row i: after training task i+1; column j: test task j+1) as a heat map
/// with its values written in.
pub fn heat_map(matrix: &[Vec<Option<f64>>], title: &str) -> Result<String> {
    let n = matrix.len().max(1) as i32;
    plot(title, 45, |mut builder| {
        // Segmented axes put each task's label under the middle of its cells; the rows go
        // downwards (row y holds "after task n - y").
        let mut chart = drawn(builder.build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented()))?;
        let task = |value: &SegmentValue<i32>, flip: bool| match value {
            SegmentValue::CenterOf(v) if flip => format!("{}", n - v),
            SegmentValue::CenterOf(v) => format!("{}", v + 1),
            _ => String::new(),
        };
        drawn(
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("test task")
                .y_desc("after training task")
                .x_label_formatter(&|x| task(x, false))
                .y_label_formatter(&|y| task(y, true))
                .x_labels(n as usize)
                .y_labels(n as usize)
                .draw(),
        )?;
        for (i, row) in matrix.iter().enumerate() {
            for (j, value) in row.iter().enumerate() {
                let Some(value) = value else { continue };
                let (x, y) = (j as i32, n - 1 - i as i32);
                let corner = |dx: i32, dy: i32| (SegmentValue::Exact(x + dx), SegmentValue::Exact(y + dy));
                let cell = Rectangle::new([corner(0, 0), corner(1, 1)], heat(*value).filled());
                drawn(chart.draw_series(std::iter::once(cell)))?;
                let style = ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let label = Text::new(
                    format!("{value:.1}"),
                    (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                    style,
                );
                drawn(chart.draw_series(std::iter::once(label)))?;
            }
        }
        Ok(())
    })
}

/// One line per task: its accuracy (%) after each epoch (x: the run's epoch count).
pub fn task_curves(curves: &[Vec<(f64, f64)>], title: &str) -> Result<String> {
    let epochs = curves.iter().flatten().map(|(x, _)| *x).fold(1.0, f64::max);
    plot(title, 45, |mut builder| {
        let mut chart = drawn(builder.build_cartesian_2d(1.0..epochs.max(2.0), 0.0..100.0))?;
        drawn(
            chart
                .configure_mesh()
                .x_desc("epoch of the run")
                .y_desc("top-1 %")
                .draw(),
        )?;
        for (task, points) in curves.iter().enumerate() {
            let color = Palette99::pick(task).to_rgba();
            drawn(chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2))))?
                .label(format!("task {}", task + 1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        drawn(
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerLeft)
                .draw(),
        )
    })
}

/// One series against the run's epoch count.
pub fn line(points: &[(f64, f64)], title: &str) -> Result<String> {
    let epochs = points.iter().map(|(x, _)| *x).fold(2.0, f64::max);
    let top = points.iter().map(|(_, y)| *y).fold(1.0, f64::max) * 1.1;
    plot(title, 60, |mut builder| {
        let mut chart = drawn(builder.build_cartesian_2d(1.0..epochs, 0.0..top))?;
        drawn(chart.configure_mesh().x_desc("epoch of the run").draw())?;
        drawn(chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2))))?;
        Ok(())
    })
}

/// Labelled bars.
pub fn bars(bars: &[(String, f64)], title: &str) -> Result<String> {
    let top = bars.iter().map(|(_, v)| *v).fold(1e-3, f64::max) * 1.15;
    let n = bars.len().max(1) as i32;
    plot(title, 60, |mut builder| {
        let mut chart = drawn(builder.build_cartesian_2d(0..n, 0.0..top))?;
        drawn(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_desc("ms per step")
                .draw(),
        )?;
        for (i, (label, value)) in bars.iter().enumerate() {
            let x = i as i32;
            let bar = Rectangle::new([(x, 0.0), (x + 1, *value)], Palette99::pick(i).filled());
            drawn(chart.draw_series(std::iter::once(bar)))?;
            let text = Text::new(
                format!("{label}: {value:.3}"),
                (x, *value),
                ("sans-serif", 11).into_font(),
            );
            drawn(chart.draw_series(std::iter::once(text)))?;
        }
        Ok(())
    })
}

/// Rasterises plots to PNG (resvg), their text in the system's sans-serif font.
pub struct Rasteriser {
    options: resvg::usvg::Options<'static>,
}

impl Rasteriser {
    /// Loads the system's fonts once; "sans-serif" becomes the first of the usual families
    /// found (usvg's default, Arial, is rarely installed on Linux).
    pub fn new() -> Self {
        let mut options = resvg::usvg::Options::default();
        let fonts = options.fontdb_mut();
        fonts.load_system_fonts();
        let usual = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"];
        let present = usual.into_iter().find(|family| {
            fonts
                .faces()
                .any(|face| face.families.iter().any(|(name, _)| name == family))
        });
        if let Some(family) = present {
            fonts.set_sans_serif_family(family);
        }
        Rasteriser { options }
    }

    /// The PNG of an SVG plot.
    pub fn png(&self, svg: &str) -> Result<Vec<u8>> {
        let tree = resvg::usvg::Tree::from_str(svg, &self.options).map_err(|e| anyhow!("a plot's SVG: {e}"))?;
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or_else(|| anyhow!("a plot of {}x{} pixels", size.width(), size.height()))?;
        resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
        pixmap.encode_png().map_err(|e| anyhow!("encoding a plot as PNG: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg_of_bars() -> String {
        bars(&[("sample".into(), 0.25)], "b").unwrap()
    }

    #[test]
    fn plots_are_svg_with_their_values() {
        let svg = heat_map(&[vec![Some(99.0), None], vec![Some(40.5), Some(97.25)]], "m").unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(
            svg.contains("40.5") && svg.contains("97.2"),
            "the values are written in"
        );
        let svg = task_curves(&[vec![(1.0, 90.0), (2.0, 80.0)], vec![(2.0, 95.0)]], "t").unwrap();
        assert!(svg.contains("task 2"));
        assert!(bars(&[("sample".into(), 0.25)], "b").unwrap().contains("sample: 0.250"));
        assert!(line(&[(1.0, 1000.0), (2.0, 1200.0)], "l")
            .unwrap()
            .contains("<polyline"));
        let png = Rasteriser::new().png(&svg_of_bars()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            SIZE.0,
            "the PNG's width"
        );
        assert_eq!(heat(0.0), RGBColor(230, 60, 80));
        assert_eq!(heat(100.0), RGBColor(50, 230, 80));
    }
}
