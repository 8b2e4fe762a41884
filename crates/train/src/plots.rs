//! Pictures of results, as PNG bytes (feature `plots`): the range test's curve, the sweep's
//! accuracy against rate, a confusion matrix and a grid of misclassified images. Drawn with
//! plotters into a pixel buffer, text in the bundled DejaVu Sans (no system fonts), encoded by
//! the `image` crate. [`EvalPictures::save`] writes an evaluation's three files; the other
//! pictures are returned as bytes for the caller to write.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use under8k_model::checkpoint::{CheckpointError, write_atomic};

use crate::lr_find::{RangeCurve, SweepPoint};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The palette every picture uses (matplotlib's first three).
pub const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Drawing failed.
#[derive(Debug, thiserror::Error)]
#[error("drawing a picture failed: {0}")]
pub struct PlotError(String);

impl PlotError {
    /// A drawing failure in words.
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

fn fail(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Registers the bundled font as `sans-serif` (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled font is a valid TTF"));
    });
}

/// Encodes an RGB buffer of `w × h` pixels as PNG.
pub fn png(rgb: Vec<u8>, (w, h): (u32, u32)) -> Result<Vec<u8>, PlotError> {
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| fail("image buffer size"))?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(fail)?;
    Ok(bytes)
}

/// Draws with `draw` on a white canvas of `size` and encodes it.
pub fn canvas(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), PlotError>,
) -> Result<Vec<u8>, PlotError> {
    register_font();
    let mut buf = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(fail)?;
    }
    png(buf, size)
}

/// A label formatter for an axis.
type Labels<'f> = &'f dyn Fn(&f64) -> String;

/// A chart with a log-scale x axis and a linear y axis, its grid drawn: `ranges` (x, y),
/// `descs` (x, y) and `labels` (x, and y if not the default).
fn log_x_chart<'a, 'b: 'a>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    (x_labels, y_labels): (Labels, Option<Labels>),
) -> Result<LogXChart<'a, 'b>, PlotError> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .margin_right(36)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x.log_scale(), y)
        .map_err(fail)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE).x_label_formatter(x_labels);
    if let Some(f) = y_labels {
        mesh.y_label_formatter(f);
    }
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(fail)?;
    Ok(chart)
}

/// What [`log_x_chart`] returns.
type LogXChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// The series' legend, framed, at `at`.
fn legend<'a, 'b: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    at: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(at)
        .label_font(("sans-serif", 17))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(fail)
}

/// `0.0316` → `3.2e-2`.
fn sci(v: f64) -> String {
    format!("{v:.1e}")
}

/// The range test: smoothed loss (and the raw loss, faint) against the rate on a log axis, the
/// two suggestions marked.
pub fn range_test(curve: &RangeCurve, title: &str) -> Result<Vec<u8>, PlotError> {
    let p = &curve.points;
    if p.is_empty() {
        return Err(fail("the range test has no points"));
    }
    // Down to the lowest raw loss, up to the highest smoothed one (raw spikes are clipped).
    let lo = p
        .iter()
        .map(|p| p.loss.min(p.smoothed))
        .fold(f64::INFINITY, f64::min);
    let hi = p
        .iter()
        .map(|p| p.smoothed)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let x = (
        curve.test.start_lr,
        p[p.len() - 1].lr.max(curve.test.start_lr * 1.01),
    );
    canvas((1100, 650), |root| {
        let mut chart = log_x_chart(
            root,
            title,
            (x.0..x.1, (lo - pad)..(hi + pad)),
            ("learning rate (log scale)", "training loss"),
            (&|v| sci(*v), None),
        )?;
        let clip = |v: f64| v.clamp(lo - pad, hi + pad);
        chart
            .draw_series(LineSeries::new(
                p.iter().map(|q| (q.lr, clip(q.loss))),
                COLORS[0].mix(0.3).stroke_width(1),
            ))
            .map_err(fail)?
            .label("loss per batch")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], COLORS[0].mix(0.3)));
        chart
            .draw_series(LineSeries::new(
                p.iter().map(|q| (q.lr, q.smoothed)),
                COLORS[0].stroke_width(3),
            ))
            .map_err(fail)?
            .label("smoothed (β = 0.98)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], COLORS[0].stroke_width(3)));
        let marks = [
            (curve.steepest(), COLORS[1], "steepest descent"),
            (curve.min_over_ten(), COLORS[2], "minimum / 10"),
        ];
        for (lr, color, name) in marks {
            let Some(lr) = lr.filter(|lr| (x.0..=x.1).contains(lr)) else {
                continue;
            };
            chart
                .draw_series(LineSeries::new(
                    [(lr, lo - pad), (lr, hi + pad)],
                    color.stroke_width(2),
                ))
                .map_err(fail)?
                .label(format!("{name}: {}", sci(lr)))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// The sweep: each rate's last-epoch and best test accuracy, on a log rate axis.
pub fn sweep(points: &[SweepPoint], title: &str) -> Result<Vec<u8>, PlotError> {
    if points.is_empty() {
        return Err(fail("the sweep has no points"));
    }
    let xs = points.iter().map(|p| p.lr);
    let (x0, x1) = xs.fold((f64::INFINITY, 0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (x0, x1) = (x0 / 1.3, x1 * 1.3);
    let ys = points.iter().flat_map(|p| [p.last_acc, p.max_acc]);
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (y0, y1) = ((y0 - 0.1).max(0.0), (y1 + 0.1).min(100.0));
    canvas((1100, 650), |root| {
        let mut chart = log_x_chart(
            root,
            title,
            (x0..x1, y0..y1),
            ("constant learning rate (log scale)", "test accuracy (%)"),
            (&|v| format!("{v:.3}"), Some(&|v| format!("{v:.2}"))),
        )?;
        for (name, color, best) in [
            ("last epoch", COLORS[0], false),
            ("best epoch", COLORS[1], true),
        ] {
            let value = |p: &SweepPoint| if best { p.max_acc } else { p.last_acc };
            let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.lr, value(p))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(fail)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|q| Circle::new(q, 5, color.filled())))
                .map_err(fail)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// A confusion matrix (`m[true][predicted]`) as a heat map with the count in every cell; each
/// cell's shade is its share of its row.
pub fn confusion(m: &[Vec<usize>], title: &str) -> Result<Vec<u8>, PlotError> {
    const CELL: i32 = 56;
    const LEFT: i32 = 90;
    const TOP: i32 = 96;
    let n = m.len() as i32;
    let side = (LEFT + n * CELL + 30) as u32;
    let height = (TOP + n * CELL + 60) as u32;
    canvas((side, height), |root| {
        let put = |s: String, at: (i32, i32), size: f64, ink: RGBColor| {
            root.draw(&Text::new(s, at, centred(size, ink)))
                .map_err(fail)
        };
        put(title.into(), (side as i32 / 2, 24), 22.0, BLACK)?;
        put(
            "predicted".into(),
            (LEFT + n * CELL / 2, TOP - 38),
            18.0,
            BLACK,
        )?;
        put("true".into(), (LEFT - 62, TOP + n * CELL / 2), 18.0, BLACK)?;
        for (t, row) in m.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            let y = TOP + t as i32 * CELL;
            put(t.to_string(), (LEFT - 22, y + CELL / 2), 17.0, BLACK)?;
            for (p, &count) in row.iter().enumerate() {
                let x = LEFT + p as i32 * CELL;
                if t == 0 {
                    put(p.to_string(), (x + CELL / 2, TOP - 14), 17.0, BLACK)?;
                }
                // Shade by the cell's share of its row, on a square-root scale so that a few
                // errors stay visible next to a diagonal of ~1,000.
                let share = (count as f64 / total).sqrt();
                let shade = |to: f64| (255.0 - share * (255.0 - to)) as u8;
                let fill = RGBColor(shade(8.0), shade(48.0), shade(107.0));
                let cell = [(x, y), (x + CELL, y + CELL)];
                root.draw(&Rectangle::new(cell, fill.filled()))
                    .map_err(fail)?;
                root.draw(&Rectangle::new(cell, RGBColor(200, 200, 200)))
                    .map_err(fail)?;
                let ink = if share > 0.6 { WHITE } else { BLACK };
                put(count.to_string(), (x + CELL / 2, y + CELL / 2), 15.0, ink)?;
            }
        }
        let note = "rows: true class, columns: predicted; shade: share of the row (square root)";
        put(
            note.into(),
            (side as i32 / 2, TOP + n * CELL + 30),
            14.0,
            BLACK,
        )
    })
}

/// Text in the bundled font, centred on its position.
fn centred(size: f64, ink: RGBColor) -> TextStyle<'static> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    ("sans-serif", size)
        .into_font()
        .color(&ink)
        .pos(Pos::new(HPos::Center, VPos::Center))
}

/// One tile of [`misclassified`].
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a> {
    /// Grayscale pixels, `rows × cols`, row-major.
    pub pixels: &'a [u8],
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// The caption: e.g. `"7 → 2 (0.83)"`.
    pub caption: &'a str,
}

/// Images in a grid of `per_row` columns, each scaled ×3 with its caption below.
pub fn misclassified(tiles: &[Tile], per_row: usize, title: &str) -> Result<Vec<u8>, PlotError> {
    const SCALE: usize = 3;
    const CAPTION: usize = 22;
    const GAP: usize = 10;
    const TOP: usize = 44;
    let per_row = per_row.max(1);
    let (rows, cols) = tiles.first().map_or((28, 28), |t| (t.rows, t.cols));
    if tiles
        .iter()
        .any(|t| (t.rows, t.cols) != (rows, cols) || t.pixels.len() != rows * cols)
    {
        return Err(fail("tiles of different sizes"));
    }
    let tile_w = (cols * SCALE).max(96) + GAP;
    let tile_h = rows * SCALE + CAPTION + GAP;
    let grid_rows = tiles.len().div_ceil(per_row).max(1);
    let w = (per_row * tile_w + GAP) as u32;
    let h = (TOP + grid_rows * tile_h + GAP) as u32;
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let origin = |k: usize| {
        let x = GAP + (k % per_row) * tile_w + (tile_w - GAP - cols * SCALE) / 2;
        (x, TOP + (k / per_row) * tile_h)
    };
    for (k, t) in tiles.iter().enumerate() {
        let (x0, y0) = origin(k);
        for y in 0..rows * SCALE {
            for x in 0..cols * SCALE {
                let v = t.pixels[(y / SCALE) * cols + x / SCALE];
                let at = ((y0 + y) * w as usize + x0 + x) * 3;
                buf[at..at + 3].fill(v);
            }
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.draw(&Text::new(title, (w as i32 / 2, 22), centred(20.0, BLACK)))
            .map_err(fail)?;
        for (k, t) in tiles.iter().enumerate() {
            let (x0, y0) = origin(k);
            let at = (
                (x0 + cols * SCALE / 2) as i32,
                (y0 + rows * SCALE + CAPTION / 2 + 1) as i32,
            );
            root.draw(&Text::new(
                t.caption,
                at,
                centred(15.0, RGBColor(180, 20, 20)),
            ))
            .map_err(fail)?;
        }
        root.present().map_err(fail)?;
    }
    png(buf, (w, h))
}

/// The files `under8k eval --out` writes, as bytes.
#[derive(Debug, Clone)]
pub struct EvalPictures {
    /// `confusion.png`.
    pub confusion_png: Vec<u8>,
    /// `misclassified.png`: the first `show` errors, in the split's order.
    pub misclassified_png: Vec<u8>,
    /// `misclassified.csv`: every error (`index,label,predicted,probability,label_probability`).
    pub misclassified_csv: String,
    /// Tiles drawn: `min(show, errors)`.
    pub tiles: usize,
}

impl EvalPictures {
    /// Writes `confusion.png`, `misclassified.png` and `misclassified.csv` into `dir` (created
    /// if missing), each through a temporary file and a rename.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for (file, bytes) in [
            ("confusion.png", &self.confusion_png[..]),
            ("misclassified.png", &self.misclassified_png[..]),
            ("misclassified.csv", self.misclassified_csv.as_bytes()),
        ] {
            write_atomic(&dir.join(file), bytes)?;
        }
        Ok(())
    }
}

/// The confusion matrix and the misclassified images of an evaluation of `split`.
pub fn eval_pictures(
    e: &crate::run::Evaluation,
    split: &under8k_mnist_data::Split,
    show: usize,
    name: &str,
) -> Result<EvalPictures, PlotError> {
    let errors: Vec<(usize, &crate::run::Prediction)> = e
        .predictions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.predicted != p.label)
        .collect();
    let mut csv = String::from("index,label,predicted,probability,label_probability\n");
    for (i, p) in &errors {
        csv += &format!(
            "{i},{},{},{},{}\n",
            p.label, p.predicted, p.probability, p.label_probability
        );
    }
    let captions: Vec<String> = errors
        .iter()
        .take(show)
        .map(|(_, p)| format!("{} → {} ({:.2})", p.label, p.predicted, p.probability))
        .collect();
    let (rows, cols) = (split.images.rows, split.images.cols);
    let tiles: Vec<Tile> = errors
        .iter()
        .zip(&captions)
        .map(|((i, _), caption)| Tile {
            pixels: split.images.image(*i),
            rows,
            cols,
            caption,
        })
        .collect();
    let shown = tiles.len();
    let title = format!(
        "{name}: the first {shown} of {} misclassified test images (true → predicted, probability)",
        errors.len()
    );
    let accuracy = format!(
        "{name}: confusion matrix, {} of {} correct ({:.2} %)",
        e.correct,
        e.total,
        e.accuracy()
    );
    Ok(EvalPictures {
        confusion_png: confusion(&e.confusion, &accuracy)?,
        misclassified_png: misclassified(&tiles, 8, &title)?,
        misclassified_csv: csv,
        tiles: shown,
    })
}
