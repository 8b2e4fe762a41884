//! The report's PNGs, drawn with plotters into a pixel buffer (text with the DejaVu Sans that
//! `under8k-train`'s `plots` feature bundles: no system fonts) and encoded by the `image` crate.

use std::path::Path;

use super::error::{Context, Result};
use crate::plots::{COLORS, PlotError, register_font as font};
use plotters::prelude::*;

use super::runs::{self, Run};

/// Mean and standard deviation across seeds, index by index (over the shortest series).
fn mean_sd(series: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = series.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|i| runs::mean_sd(&series.iter().map(|s| s[i]).collect::<Vec<_>>()))
        .unzip()
}

struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// x of the first point and the step between points.
    x0: f64,
    series: Vec<Vec<f64>>,
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel,
    color: RGBColor,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (mean, sd) = mean_sd(&p.series);
    let n = mean.len().max(1);
    let xs: Vec<f64> = (0..n).map(|i| p.x0 + i as f64).collect();
    let lo = mean
        .iter()
        .zip(&sd)
        .map(|(m, s)| m - s)
        .fold(f64::INFINITY, f64::min);
    let hi = mean
        .iter()
        .zip(&sd)
        .map(|(m, s)| m + s)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xs[0]..xs[n - 1].max(xs[0] + 1.0), (lo - pad)..(hi + pad))
        .map_err(PlotError::new)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(n.min(12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(PlotError::new)?;
    if p.series.len() > 1 {
        let band: Vec<(f64, f64)> = xs
            .iter()
            .zip(mean.iter().zip(&sd))
            .map(|(&x, (m, s))| (x, m + s))
            .chain(
                xs.iter()
                    .zip(mean.iter().zip(&sd))
                    .rev()
                    .map(|(&x, (m, s))| (x, m - s)),
            )
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                color.mix(0.25).filled(),
            )))
            .map_err(PlotError::new)?;
    }
    chart
        .draw_series(LineSeries::new(
            xs.iter().copied().zip(mean.iter().copied()),
            color.stroke_width(2),
        ))
        .map_err(PlotError::new)?;
    Ok(())
}

fn save(path: &Path, buf: Vec<u8>, (w, h): (u32, u32)) -> Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).context("image buffer size")?;
    img.save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", path.display()))
}

/// The seed's 2×2 panel: training loss and accuracy per batch, test loss and accuracy per epoch
/// (mean over seeds, with a ±1 sd band when there are several).
pub fn curves(path: &Path, attempt: u8, runs: &[Run]) -> Result<()> {
    curves_titled(
        path,
        &format!("Attempt {attempt}"),
        COLORS[(attempt as usize + 2) % 3],
        runs,
    )
}

/// [`curves`] under another title and colour.
pub fn curves_titled(path: &Path, title: &str, color: RGBColor, runs: &[Run]) -> Result<()> {
    font();
    let size = (1400u32, 1000u32);
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::new)?;
        let seeds = if runs.len() > 1 {
            format!(", mean of {} seeds", runs.len())
        } else {
            format!(", seed {}", runs[0].seed)
        };
        let root = root
            .titled(&format!("{title}{seeds}"), ("sans-serif", 28))
            .map_err(PlotError::new)?;
        let areas = root.split_evenly((2, 2));
        let panels = [
            Panel {
                title: "Training loss",
                x_desc: "batch",
                y_desc: "NLL loss",
                x0: 1.0,
                series: runs.iter().map(|r| r.history.batch_loss.clone()).collect(),
            },
            Panel {
                title: "Training accuracy (running, per epoch)",
                x_desc: "batch",
                y_desc: "accuracy (%)",
                x0: 1.0,
                series: runs.iter().map(|r| r.history.batch_acc.clone()).collect(),
            },
            Panel {
                title: "Test loss",
                x_desc: "epoch",
                y_desc: "NLL loss",
                x0: 1.0,
                series: runs
                    .iter()
                    .map(|r| r.history.epochs.iter().map(|e| e.test_loss).collect())
                    .collect(),
            },
            Panel {
                title: "Test accuracy",
                x_desc: "epoch",
                y_desc: "accuracy (%)",
                x0: 1.0,
                series: runs.iter().map(Run::test_acc).collect(),
            },
        ];
        for (area, p) in areas.iter().zip(&panels) {
            draw_panel(area, p, color)?;
        }
        root.present().map_err(PlotError::new)?;
    }
    save(path, buf, size)
}

/// One line of an accuracy chart; lines without a label stay out of the legend.
pub struct Line {
    pub label: Option<String>,
    pub color: RGBColor,
    pub width: u32,
    /// Test accuracy of epochs 1, 2, …
    pub values: Vec<f64>,
}

/// Test accuracy per epoch of every attempt (mean over seeds), the write-up's own attempt 3 when
/// given, and the target's line if any.
pub fn comparison(
    path: &Path,
    all: &[(u8, Vec<Run>)],
    write_up: Option<&[Run]>,
    target: Option<f64>,
) -> Result<()> {
    let mut lines: Vec<Line> = all
        .iter()
        .map(|(a, runs)| {
            let series: Vec<Vec<f64>> = runs.iter().map(Run::test_acc).collect();
            Line {
                label: Some(format!("attempt {a}")),
                color: COLORS[(*a as usize + 2) % 3],
                width: 3,
                values: mean_sd(&series).0,
            }
        })
        .collect();
    if let Some(runs) = write_up {
        let series: Vec<Vec<f64>> = runs.iter().map(Run::test_acc).collect();
        lines.push(Line {
            label: Some("write-up's attempt 3 (StepLR from 0.07)".into()),
            color: RGBColor(214, 39, 40),
            width: 2,
            values: mean_sd(&series).0,
        });
    }
    accuracy_chart(path, "Test accuracy per epoch", &lines, &[], target)
}

fn runs(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

/// Attempt `attempt`'s test accuracy per epoch, every seed of ours against every PyTorch run,
/// with the seed write-up's published epochs as dots (`reference`: (epoch, accuracy)).
pub fn pytorch(
    path: &Path,
    attempt: u8,
    ours: &[Run],
    torch: &[Vec<f64>],
    reference: &[(usize, f64)],
    target: Option<f64>,
) -> Result<()> {
    let ours = ours.iter().enumerate().map(|(i, r)| Line {
        label: (i == 0).then(|| format!("under8k ({})", runs(ours.len()))),
        color: COLORS[0],
        width: 2,
        values: r.test_acc(),
    });
    let theirs = torch.iter().enumerate().map(|(i, v)| Line {
        label: (i == 0).then(|| format!("PyTorch ({})", runs(torch.len()))),
        color: COLORS[1],
        width: 2,
        values: v.clone(),
    });
    let lines: Vec<Line> = ours.chain(theirs).collect();
    accuracy_chart(
        path,
        &format!("Attempt {attempt}: test accuracy per epoch, under8k and PyTorch"),
        &lines,
        reference,
        target,
    )
}

fn accuracy_chart(
    path: &Path,
    title: &str,
    lines: &[Line],
    reference: &[(usize, f64)],
    target: Option<f64>,
) -> Result<()> {
    font();
    let size = (1200u32, 700u32);
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::new)?;
        let n = lines
            .iter()
            .map(|l| l.values.len())
            .max()
            .unwrap_or(1)
            .max(2);
        let lo = lines
            .iter()
            .flat_map(|l| l.values.iter().copied())
            .fold(target.unwrap_or(100.0), f64::min);
        let y0 = ((lo - 0.1) * 10.0).floor() / 10.0;
        // Up to 100 % when a target is drawn (MNIST); else just above the highest value.
        let y1 = match target {
            Some(_) => 100.0,
            None => {
                let hi = lines
                    .iter()
                    .flat_map(|l| l.values.iter().copied())
                    .fold(f64::NEG_INFINITY, f64::max);
                (((hi + 0.1) * 10.0).ceil() / 10.0).min(100.0)
            }
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(1f64..n as f64, y0..y1)
            .map_err(PlotError::new)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(n.min(15))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .x_desc("epoch")
            .y_desc("test accuracy (%)")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()
            .map_err(PlotError::new)?;
        if let Some(t) = target {
            chart
                .draw_series(LineSeries::new(
                    [(1.0, t), (n as f64, t)],
                    BLACK.stroke_width(1),
                ))
                .map_err(PlotError::new)?
                .label(format!("{t} %"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLACK));
        }
        for l in lines {
            let (color, width) = (l.color, l.width);
            let series = chart
                .draw_series(LineSeries::new(
                    l.values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64 + 1.0, *v)),
                    color.stroke_width(width),
                ))
                .map_err(PlotError::new)?;
            if let Some(label) = &l.label {
                series.label(label).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(width))
                });
            }
        }
        if !reference.is_empty() {
            chart
                .draw_series(
                    reference
                        .iter()
                        .map(|&(e, v)| Circle::new((e as f64, v), 6, BLACK.filled())),
                )
                .map_err(PlotError::new)?
                .label("seed write-up")
                .legend(|(x, y)| Circle::new((x + 12, y), 6, BLACK.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 18))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(PlotError::new)?;
        root.present().map_err(PlotError::new)?;
    }
    save(path, buf, size)
}
