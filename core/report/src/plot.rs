//! `quality_vs_parallelism.png`: each metric against tokens per step.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use rediff_api::{Error, Result};

use crate::results::EvalRow;
use crate::Report;

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws every metric against tokens per step (log2 axis), one panel per
/// metric and one line per model x sampler.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| Error::invalid(format!("plot {}: {e}", path.display()));
    let mut series: BTreeMap<(String, String), Vec<&EvalRow>> = BTreeMap::new();
    for r in &report.results {
        series
            .entry((r.model.clone(), r.sampler.clone()))
            .or_default()
            .push(r);
    }
    let max_tps = report
        .results
        .iter()
        .map(|r| r.tokens_per_step)
        .max()
        .unwrap_or(1)
        .max(2);
    let x_max = (max_tps as f64).log2();
    let metrics: Vec<(String, bool)> = if report.metrics.is_empty() {
        report
            .results
            .first()
            .map(|r| {
                r.metrics
                    .iter()
                    .map(|(n, _)| (n.to_string(), true))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        report
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.higher_is_better))
            .collect()
    };
    let root =
        BitMapBackend::new(path, (600 * metrics.len().max(1) as u32, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, metrics.len().max(1)));
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (panel, (metric, higher_is_better)) in panels.iter().zip(&metrics) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{metric} vs tokens per step"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.2f64..x_max + 0.2, 0f64..1.02f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("tokens per step")
            .y_desc(metric.as_str())
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| format!("{}", 2f64.powf(x.round())))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, ((model, sampler), rows)) in series.iter().enumerate() {
            let color = palette[i % palette.len()];
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| Some(((r.tokens_per_step as f64).log2(), r.metric(metric)?)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = ShapeStyle::from(&color).stroke_width(3);
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(format!("{model} / {sampler}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            // Quality falls with parallelism, error rates rise: keep the legend off the lines.
            .position(if *higher_is_better {
                SeriesLabelPosition::LowerLeft
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
