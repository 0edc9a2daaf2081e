//! `shmq bench --plot FILE.svg`: one-way latency by percentile, one panel per message size,
//! one curve per transport, both axes logarithmic (the HdrHistogram plot). Drawn with
//! plotters' SVG backend: text is emitted as SVG `<text>`, so no system fonts are needed.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::Measurements;
use super::report::merge;

/// x of quantile `q`: the number of nines, `-log10(1 - q)` (0 = 0%, 1 = 90%, 2 = 99%, ...).
fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-9).log10()
}

fn percent_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if x < 0.5 {
        "0%".to_owned()
    } else {
        let digits = (x.round() as usize).saturating_sub(2);
        format!("{p:.digits$}%")
    }
}

/// `250 ns`, `1.5 µs`, `20 ms`.
fn human_ns(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if v >= 10.0 || v.fract() < 0.05 { format!("{v:.0} {unit}") } else { format!("{v:.1} {unit}") }
}

/// Draws the plot into `path`.
pub fn draw(path: &Path, m: &Measurements) -> Result<()> {
    let merged = merge(m);
    let panels = m.sizes.len();
    let cols = if panels > 1 { 2 } else { 1 };
    let rows = panels.div_ceil(cols);
    let root = SVGBackend::new(path, (720 * cols as u32, 480 * rows as u32)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow!("plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((rows, cols));
    for (si, &size) in m.sizes.iter().enumerate() {
        let hists: Vec<_> = merged[si].iter().map(|g| &g.hist).collect();
        let total = hists.iter().map(|h| h.len()).max().unwrap_or(1).max(10);
        let xmax = (total as f64).log10().ceil().clamp(1.0, 7.0);
        let ymin = hists.iter().filter(|h| !h.is_empty()).map(|h| h.min()).min().unwrap_or(1).max(1) as f64;
        let ymax = hists.iter().map(|h| h.max()).max().unwrap_or(10).max(10) as f64;
        let mut chart = ChartBuilder::on(&areas[si])
            .caption(format!("one-way latency, {} messages", crate::args::format_size(size as u64)), ("sans-serif", 20))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..xmax, (ymin * 0.8..ymax * 1.25).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("one-way latency (log)")
            .x_labels(xmax as usize + 1)
            .x_label_formatter(&|x| percent_label(*x))
            .y_label_formatter(&|y| human_ns(*y))
            .draw()
            .map_err(err)?;
        for (ci, c) in m.configs.iter().enumerate() {
            let h = hists[ci];
            if h.is_empty() {
                continue;
            }
            let color = Palette99::pick(ci).to_rgba();
            let mut pts: Vec<(f64, f64)> = h
                .iter_quantiles(5)
                .filter(|v| v.quantile_iterated_to() < 1.0)
                .map(|v| (nines(v.quantile_iterated_to()).min(xmax), v.value_iterated_to().max(1) as f64))
                .collect();
            pts.push((xmax, h.max().max(1) as f64));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(c.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_counts_nines() {
        assert_eq!(percent_label(0.0), "0%");
        assert_eq!(percent_label(1.0), "90%");
        assert_eq!(percent_label(2.0), "99%");
        assert_eq!(percent_label(3.0), "99.9%");
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(human_ns(250.0), "250 ns");
        assert_eq!(human_ns(1500.0), "1.5 µs");
        assert_eq!(human_ns(2e7), "20 ms");
    }
}
