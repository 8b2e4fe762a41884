//! The calculator: per-layer output shape, parameters and receptive field, and torchsummary's
//! totals — all derived from the same [`ArchSpec`] that builds the net.
//!
//! Receptive-field recurrence (per spatial axis, square kernels): with kernel `k`, stride `s`,
//! padding `p`, input jump `j` (distance between adjacent outputs, in input pixels), receptive
//! field `r` and start `c` (centre of the first output's field, pixel centres at `i + 0.5`):
//! `n_out = ⌊(n + 2p − k)/s⌋ + 1`, `j_out = j·s`, `r_out = r + (k − 1)·j`,
//! `c_out = c + ((k − 1)/2 − p)·j`. GAP acts as a pool with `k = s = n`.
//!
//! Mult-adds and memory follow torchinfo 1.8: a conv does `params · H_out · W_out` mult-adds
//! per image (its weights, and bias, once per output pixel), a BatchNorm `2C` (its two
//! parameters once each), every other layer none; the forward/backward size counts the outputs of
//! the layers that have parameters, twice (value and gradient), in decimal megabytes.

use serde::Serialize;

use crate::spec::{ArchSpec, Layer, ResolvedLayer, SpecError};

/// One row of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// torchsummary's name: class and running index, `Conv2d-1`.
    pub layer: String,
    /// Parameter-name prefix (`convblock1.0`).
    pub name: String,
    /// Output shape with `-1` for the batch: `[-1, C, H, W]` (`[-1, C]` after log-softmax).
    pub output_shape: Vec<i64>,
    /// Trainable parameters.
    pub params: usize,
    /// Receptive field (side, in input pixels).
    pub rf: usize,
    /// Jump: product of the strides so far.
    pub jump: usize,
    /// Centre of the first output's receptive field, in input pixel coordinates.
    pub start: f64,
    /// Kernel side of a conv or pool (a global average pool's is its input's side).
    pub kernel: Option<usize>,
    /// Mult-adds per image, as torchinfo counts them (see the module page).
    pub mult_adds: u64,
    /// This layer's share of all parameters, in percent.
    pub param_percent: f64,
    /// Bytes of this layer's output and its gradient per image, as torchinfo counts them: only
    /// for layers with parameters.
    pub forward_backward_bytes: u64,
}

/// The whole summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The spec's name.
    pub name: String,
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// One row per layer.
    pub rows: Vec<Row>,
    /// Totals, as torchsummary prints them.
    pub totals: Totals,
    /// Which rows change the spatial grid (convs and pools), recorded once while building.
    #[serde(skip)]
    grid_rows: Vec<bool>,
}

/// torchsummary's totals (sizes in MiB, for a batch of one, `f32`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// All parameters.
    pub total_params: usize,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// Non-trainable parameters.
    pub non_trainable_params: usize,
    /// Input size (MB).
    pub input_size_mb: f64,
    /// Forward/backward pass size (MB): twice the sum of all layer outputs.
    pub forward_backward_size_mb: f64,
    /// Parameters size (MB).
    pub params_size_mb: f64,
    /// Estimated total size (MB).
    pub total_size_mb: f64,
    /// Mult-adds per image, summed over the layers.
    pub mult_adds: u64,
    /// torchinfo's sizes, in decimal megabytes (10⁶ bytes).
    pub torchinfo: TorchinfoSizes,
}

/// The sizes torchinfo prints, for a batch of one `f32` image, in decimal megabytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TorchinfoSizes {
    /// Input size (MB).
    pub input_size_mb: f64,
    /// Forward/backward pass size (MB): twice the outputs of the layers with parameters.
    pub forward_backward_size_mb: f64,
    /// Parameters size (MB).
    pub params_size_mb: f64,
    /// Estimated total size (MB).
    pub total_size_mb: f64,
}

/// Receptive-field state along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rf {
    /// Receptive field.
    pub r: usize,
    /// Jump.
    pub j: usize,
    /// Start.
    pub start: f64,
}

impl Rf {
    /// A single input pixel.
    pub const INPUT: Rf = Rf {
        r: 1,
        j: 1,
        start: 0.5,
    };

    /// After a window of kernel `k`, stride `s`, padding `p`.
    pub fn after(self, k: usize, s: usize, p: usize) -> Rf {
        Rf {
            r: self.r + (k - 1) * self.j,
            j: self.j * s,
            start: self.start + ((k as f64 - 1.0) / 2.0 - p as f64) * self.j as f64,
        }
    }
}

const MB: f64 = 1024.0 * 1024.0;

impl Summary {
    /// Computes the summary of a spec.
    ///
    /// ```
    /// use under8k_model::{ArchSpec, Summary};
    ///
    /// // One 3×3 conv 1→4 on 8×8, then a 2×2 max pool: 4·1·3·3 = 36 weights, RF 3 then 4.
    /// let spec = ArchSpec::from_json(r#"{"name": "s", "input": [1, 8, 8], "blocks": [{"name": "b",
    ///   "layers": [{"type": "conv", "out_channels": 4, "kernel": 3},
    ///              {"type": "max_pool", "kernel": 2, "stride": 2}]}]}"#)?;
    /// let s = Summary::of(&spec)?;
    /// assert_eq!(s.totals.total_params, 36);
    /// assert_eq!(s.receptive_fields(), [3, 4]);
    /// assert_eq!(s.rows[1].output_shape, [-1, 4, 3, 3]);
    /// # Ok::<(), under8k_model::SpecError>(())
    /// ```
    pub fn of(spec: &ArchSpec) -> Result<Self, SpecError> {
        let layers = spec.resolve()?;
        Ok(Self::of_resolved(spec, &layers))
    }

    /// Computes the summary from already resolved layers.
    pub fn of_resolved(spec: &ArchSpec, layers: &[ResolvedLayer]) -> Self {
        let mut rf = Rf::INPUT;
        let mut rows = Vec::with_capacity(layers.len());
        let mut outputs = 0usize;
        let mut grid_rows = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            let window = l.layer.window(l.input.h);
            if let Some((k, s, p)) = window {
                rf = rf.after(k, s, p);
            }
            grid_rows.push(window.is_some());
            let o = l.output;
            let output_shape = if matches!(l.layer, Layer::LogSoftmax) {
                vec![-1, o.c as i64]
            } else {
                vec![-1, o.c as i64, o.h as i64, o.w as i64]
            };
            let size = o.c * o.h * o.w;
            outputs += size;
            let params = l.layer.params(l.input.c);
            let mult_adds = match l.layer {
                Layer::Conv { .. } => (params * o.h * o.w) as u64,
                _ => params as u64,
            };
            rows.push(Row {
                layer: format!("{}-{}", l.layer.kind(), i + 1),
                name: l.prefix(),
                output_shape,
                params,
                rf: rf.r,
                jump: rf.j,
                start: rf.start,
                kernel: window.map(|(k, _, _)| k),
                mult_adds,
                param_percent: 0.0,
                forward_backward_bytes: if params > 0 { 2 * 4 * size as u64 } else { 0 },
            });
        }
        let total: usize = rows.iter().map(|r| r.params).sum();
        for r in &mut rows {
            r.param_percent = 100.0 * r.params as f64 / total.max(1) as f64;
        }
        let mult_adds = rows.iter().map(|r| r.mult_adds).sum();
        let fwd_bwd: u64 = rows.iter().map(|r| r.forward_backward_bytes).sum();
        let torchinfo = TorchinfoSizes {
            input_size_mb: spec.input.iter().product::<usize>() as f64 * 4.0 / 1e6,
            forward_backward_size_mb: fwd_bwd as f64 / 1e6,
            params_size_mb: total as f64 * 4.0 / 1e6,
            total_size_mb: 0.0,
        };
        let input_size_mb = spec.input.iter().product::<usize>() as f64 * 4.0 / MB;
        let forward_backward_size_mb = 2.0 * outputs as f64 * 4.0 / MB;
        let params_size_mb = total as f64 * 4.0 / MB;
        Summary {
            name: spec.name.clone(),
            input: spec.input,
            rows,
            totals: Totals {
                total_params: total,
                trainable_params: total,
                non_trainable_params: 0,
                input_size_mb,
                forward_backward_size_mb,
                params_size_mb,
                total_size_mb: input_size_mb + forward_backward_size_mb + params_size_mb,
                mult_adds,
                torchinfo: TorchinfoSizes {
                    total_size_mb: torchinfo.input_size_mb
                        + torchinfo.forward_backward_size_mb
                        + torchinfo.params_size_mb,
                    ..torchinfo
                },
            },
            grid_rows,
        }
    }

    /// Receptive fields after each layer that changes the grid (convs and pools), in order.
    pub fn receptive_fields(&self) -> Vec<usize> {
        self.rows
            .iter()
            .zip(&self.grid_rows)
            .filter(|(_, g)| **g)
            .map(|(r, _)| r.rf)
            .collect()
    }

    /// The row (index) at which the running parameter total first exceeds `budget`, if it does.
    pub fn over_budget(&self, budget: usize) -> Option<usize> {
        let mut sum = 0;
        self.rows.iter().position(|r| {
            sum += r.params;
            sum > budget
        })
    }

    /// The table as torchsummary prints it, with torchinfo's kernel, parameter-share and
    /// mult-add columns and receptive field, jump and start added; totals as both print them.
    pub fn to_table(&self) -> String {
        self.to_table_with(None)
    }

    /// [`to_table`](Self::to_table), marking with `<-- over N` the row where the running
    /// parameter total passes the budget `N`.
    pub fn to_table_with(&self, budget: Option<usize>) -> String {
        const WIDTH: usize = 124;
        let line = "-".repeat(WIDTH);
        let double = "=".repeat(WIDTH);
        let over = budget.and_then(|b| self.over_budget(b));
        let mut s = String::new();
        s += &format!("{line}\n");
        s += &format!(
            "{:>18}  {:>18}  {:>6}  {:>8}  {:>6}  {:>10}  {:>5}  {:>4}  {:>5}  {:>8}  {:<14}\n",
            "Layer (type)",
            "Output Shape",
            "Kernel",
            "Param #",
            "Param%",
            "Mult-Adds",
            "RF",
            "Jump",
            "Start",
            "Fwd+Bwd",
            "Name"
        );
        s += &format!("{double}\n");
        for (i, r) in self.rows.iter().enumerate() {
            let shape = format!("{:?}", r.output_shape);
            let dash = |v: u64| {
                if v == 0 {
                    "--".to_string()
                } else {
                    group(v as usize)
                }
            };
            let mut row = format!(
                "{:>18}  {:>18}  {:>6}  {:>8}  {:>6}  {:>10}  {:>5}  {:>4}  {:>5}  {:>8}  {:<14}",
                r.layer,
                shape,
                r.kernel.map_or("--".into(), |k| format!("{k}x{k}")),
                dash(r.params as u64),
                if r.params == 0 {
                    "--".into()
                } else {
                    format!("{:.2}%", r.param_percent)
                },
                dash(r.mult_adds),
                r.rf,
                r.jump,
                format!("{}", r.start),
                dash(r.forward_backward_bytes),
                r.name
            );
            if over == Some(i) {
                row += &format!("  <-- over {}", group(budget.unwrap_or(0)));
            }
            s += row.trim_end();
            s += "\n";
        }
        let t = &self.totals;
        let ti = &t.torchinfo;
        s += &format!("{double}\n");
        s += &format!("Total params: {}\n", group(t.total_params));
        s += &format!("Trainable params: {}\n", group(t.trainable_params));
        s += &format!("Non-trainable params: {}\n", group(t.non_trainable_params));
        s += &format!(
            "Total mult-adds (M): {:.2}  ({} per image)\n",
            t.mult_adds as f64 / 1e6,
            group(t.mult_adds as usize)
        );
        if let (Some(b), None) = (budget, over) {
            s += &format!("Within the budget of {} params\n", group(b));
        }
        s += &format!("{line}\n");
        s += &format!(
            "{:<34}{:>12}{:>18}\n",
            "Per image", "torchsummary", "torchinfo"
        );
        s += &format!("{:<34}{:>12}{:>18}\n", "", "(MiB)", "(MB = 10^6 B)");
        for (label, a, b) in [
            ("Input size:", t.input_size_mb, ti.input_size_mb),
            (
                "Forward/backward pass size:",
                t.forward_backward_size_mb,
                ti.forward_backward_size_mb,
            ),
            ("Params size:", t.params_size_mb, ti.params_size_mb),
            ("Estimated total size:", t.total_size_mb, ti.total_size_mb),
        ] {
            s += &format!("{label:<34}{a:>12.2}{b:>18.2}\n");
        }
        s += &format!("{line}\n");
        s
    }

    /// The summary as JSON (same fields as the table; see `docs/ARCH_SPEC.md`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a summary always serialises")
    }
}

/// `7684` → `7,684`.
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_net_has_the_published_numbers() {
        // Independently: conv weights 90+900+1350+150+900+900+2880+320 = 7,490, BatchNorm
        // 2·(10+10+15+10+10+10+32) = 194; total 7,684 (the seed's torchsummary output).
        let spec = ArchSpec::seed();
        let s = Summary::of(&spec).unwrap();
        assert_eq!(s.totals.total_params, 7684);
        assert_eq!(s.receptive_fields(), [3, 5, 7, 8, 8, 12, 16, 20, 28, 28]);
        assert_eq!(s.rows[0].layer, "Conv2d-1");
        assert_eq!(s.rows[0].output_shape, [-1, 10, 26, 26]);
        assert_eq!(s.rows[12].layer, "MaxPool2d-13");
        assert_eq!(s.rows[12].output_shape, [-1, 15, 11, 11]);
        assert_eq!(s.rows[29].layer, "AvgPool2d-30");
        assert_eq!(s.rows[30].output_shape, [-1, 10, 1, 1]);
        assert_eq!(s.rows.last().unwrap().output_shape, [-1, 10]);
        // Mult-adds by hand, per image (torchinfo's rule: a conv's weights once per output
        // pixel, a BatchNorm's 2C once): convs 90·26² = 60,840, 900·24² = 518,400,
        // 1350·22² = 653,400, 150·11² = 18,150, 900·9² = 72,900, 900·7² = 44,100,
        // 2880·5² = 72,000, 320·1 = 320 → 1,440,110; BatchNorms 194 → 1,440,304.
        assert_eq!(s.totals.mult_adds, 1_440_304);
        assert_eq!(s.rows[4].mult_adds, 518_400);
        assert_eq!(s.rows[1].mult_adds, 20);
        assert_eq!(s.rows[2].mult_adds, 0);
        assert_eq!(s.rows[0].kernel, Some(3));
        assert_eq!(s.rows[12].kernel, Some(2));
        assert_eq!(s.rows[29].kernel, Some(5));
        assert_eq!(s.rows[2].kernel, None);
        // Param share: 2,880 of 7,684 = 37.48 %; shares sum to 100.
        assert!((s.rows[25].param_percent - 100.0 * 2880.0 / 7684.0).abs() < 1e-12);
        let share: f64 = s.rows.iter().map(|r| r.param_percent).sum();
        assert!((share - 100.0).abs() < 1e-9);
        // torchinfo's forward/backward size: outputs of the conv and BN layers, 2·(6,760 + 5,760
        // + 7,260 + 1,210 + 810 + 490 + 800) + 10 = 46,190 floats, ×2 (gradients) ×4 bytes =
        // 369,520 B = 0.37 MB, as torchinfo 1.8 prints for the write-up's class.
        assert!((s.totals.torchinfo.forward_backward_size_mb - 0.369_520).abs() < 1e-12);
        // Budget: running totals 90, 110, …; the first row past 1,000 params is conv 2
        // (90 + 20 + 900 = 1,010), row 4.
        assert_eq!(s.over_budget(1000), Some(4));
        assert_eq!(s.over_budget(7684), None);
        assert_eq!(s.over_budget(7683), Some(30)); // Conv2d-31, the last with parameters
        let table = s.to_table_with(Some(1000));
        let marked: Vec<&str> = table.lines().filter(|l| l.contains("<-- over")).collect();
        assert_eq!(marked.len(), 1);
        assert!(marked[0].contains("Conv2d-5"), "{}", marked[0]);
        assert!(
            s.to_table_with(Some(8000))
                .contains("Within the budget of 8,000 params")
        );
        assert_eq!(group(7684), "7,684");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
    }

    fn spec(layers: &str) -> ArchSpec {
        ArchSpec::from_json(&format!(
            r#"{{"name": "t", "input": [2, 10, 10], "blocks": [{{"name": "b", "layers": [{layers}]}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn mult_adds_of_small_specs_by_hand() {
        // One 3×3 conv 2→4 with bias, stride 2, padding 1 on 10×10: output ⌊(10+2−3)/2⌋+1 = 5,
        // so 5×5 pixels, each doing 4·2·9 = 72 multiply-adds plus 4 bias adds: 76·25 = 1,900.
        let s = Summary::of(&spec(
            r#"{"type": "conv", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "bias": true}"#,
        ))
        .unwrap();
        assert_eq!(s.rows[0].output_shape, [-1, 4, 5, 5]);
        assert_eq!(s.totals.mult_adds, 1_900);
        assert_eq!(s.rows[0].forward_backward_bytes, 2 * 4 * 100);
        // Conv 1×1 2→3 (6 weights on 10×10: 600) then a 3×3 max pool stride 2 (no mult-adds,
        // output 4×4, no forward/backward bytes: it has no parameters).
        let s = Summary::of(&spec(
            r#"{"type": "conv", "out_channels": 3, "kernel": 1},
               {"type": "max_pool", "kernel": 3, "stride": 2}"#,
        ))
        .unwrap();
        assert_eq!(s.totals.mult_adds, 600);
        assert_eq!(s.rows[1].mult_adds, 0);
        assert_eq!(s.rows[1].kernel, Some(3));
        assert_eq!(s.rows[1].forward_backward_bytes, 0);
        assert_eq!(
            s.totals.torchinfo.forward_backward_size_mb,
            2.0 * 4.0 * 300.0 / 1e6
        );
    }
}
