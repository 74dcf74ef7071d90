//! `quality_vs_parallelism.png`: each metric against tokens per forward
//! pass, with the rows' 95% intervals as error bars.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use rediff_api::{Error, Result};

use crate::results::EvalRow;
use crate::Report;

/// Colours before they repeat.
const PALETTE_SIZE: usize = 10;

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

/// Where a row sits on the x axis: log2 of its measured tokens per forward
/// pass (its tokens per step for rows written before NFE was recorded).
fn x_of(r: &EvalRow) -> f64 {
    let x = if r.tokens_per_forward > 0.0 {
        r.tokens_per_forward
    } else {
        r.tokens_per_step as f64
    };
    x.max(1e-3).log2()
}

/// The line a sampler belongs to: its name before `@` (`threshold@0.9`
/// and `threshold@0.5` are points of one `threshold` line).
pub fn sampler_family(sampler: &str) -> &str {
    sampler.split('@').next().unwrap_or(sampler)
}

/// Draws every metric against tokens per forward pass (log2 axis), one
/// panel per metric and one line per model x sampler family, with error
/// bars. With more lines than colours, each model gets its own row of panels.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| Error::invalid(format!("plot {}: {e}", path.display()));
    let mut series: BTreeMap<(String, String), Vec<&EvalRow>> = BTreeMap::new();
    let mut models: Vec<&str> = Vec::new();
    for r in &report.results {
        series
            .entry((r.model.clone(), sampler_family(&r.sampler).to_string()))
            .or_default()
            .push(r);
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    let x_max = report.results.iter().map(x_of).fold(1.0, f64::max);
    let x_min = report.results.iter().map(x_of).fold(0.0, f64::min);
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
    let families: Vec<&str> = {
        let mut f: Vec<&str> = series.keys().map(|(_, s)| s.as_str()).collect();
        f.sort_unstable();
        f.dedup();
        f
    };
    let rows: Vec<Option<&str>> = if series.len() > PALETTE_SIZE && models.len() > 1 {
        models.iter().map(|m| Some(*m)).collect()
    } else {
        vec![None]
    };
    let cols = metrics.len().max(1);
    let root =
        BitMapBackend::new(path, (600 * cols as u32, 520 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((rows.len(), cols));
    let palette: [RGBColor; PALETTE_SIZE] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    // Without metrics (a run with no scorer) the image stays blank.
    for (k, panel) in panels.iter().enumerate().take(rows.len() * metrics.len()) {
        let (row_model, (metric, higher_is_better)) = (rows[k / cols], &metrics[k % cols]);
        let title = match row_model {
            Some(m) => format!("{m}: {metric} vs tokens per forward pass"),
            None => format!("{metric} vs tokens per forward pass"),
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_min - 0.2..x_max + 0.2, 0f64..1.02f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("tokens per forward pass (log scale)")
            .y_desc(metric.as_str())
            .x_labels((x_max - x_min).ceil() as usize * 2 + 1)
            .x_label_formatter(&|x| format!("{:.2}", 2f64.powf(*x)))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, ((model, family), rows)) in series.iter().enumerate() {
            if row_model.is_some_and(|m| m != model) {
                continue;
            }
            // One colour per family when each model has its own row.
            let colour_index = match row_model {
                Some(_) => families.iter().position(|f| f == family).unwrap_or(i),
                None => i,
            };
            let color = palette[colour_index % palette.len()];
            let mut rows: Vec<&&EvalRow> =
                rows.iter().filter(|r| r.metric(metric).is_some()).collect();
            rows.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)));
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| Some((x_of(r), r.metric(metric)?)))
                .collect();
            let style = ShapeStyle::from(&color).stroke_width(3);
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(match row_model {
                    Some(_) => family.to_string(),
                    None => format!("{model} / {family}"),
                })
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(rows.iter().filter_map(|r| {
                    let [lo, hi] = r.interval(metric)?;
                    let x = x_of(r);
                    Some(ErrorBar::new_vertical(
                        x,
                        lo,
                        r.metric(metric)?,
                        hi,
                        color.stroke_width(2),
                        8,
                    ))
                }))
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
