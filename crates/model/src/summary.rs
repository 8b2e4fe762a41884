//! The calculator: per-layer output shape, parameters and receptive field, and torchsummary's
//! totals — all derived from the same [`ArchSpec`] that builds the net.
//!
//! Receptive-field recurrence (per spatial axis, square kernels): with kernel `k`, stride `s`,
//! padding `p`, input jump `j` (distance between adjacent outputs, in input pixels), receptive
//! field `r` and start `c` (centre of the first output's field, pixel centres at `i + 0.5`):
//! `n_out = ⌊(n + 2p − k)/s⌋ + 1`, `j_out = j·s`, `r_out = r + (k − 1)·j`,
//! `c_out = c + ((k − 1)/2 − p)·j`. GAP acts as a pool with `k = s = n`.

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
            outputs += o.c * o.h * o.w;
            rows.push(Row {
                layer: format!("{}-{}", l.layer.kind(), i + 1),
                name: l.prefix(),
                output_shape,
                params: l.layer.params(l.input.c),
                rf: rf.r,
                jump: rf.j,
                start: rf.start,
            });
        }
        let total: usize = rows.iter().map(|r| r.params).sum();
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

    /// The table as torchsummary prints it, with receptive field, jump and start added.
    pub fn to_table(&self) -> String {
        let line = "-".repeat(92);
        let mut s = String::new();
        s += &format!("{line}\n");
        s += &format!(
            "{:>20}  {:>20}  {:>10}  {:>6}  {:>5}  {:>6}  {:<14}\n",
            "Layer (type)", "Output Shape", "Param #", "RF", "Jump", "Start", "Name"
        );
        s += &format!("{}\n", "=".repeat(92));
        for r in &self.rows {
            let shape = format!("{:?}", r.output_shape);
            s += &format!(
                "{:>20}  {:>20}  {:>10}  {:>6}  {:>5}  {:>6}  {:<14}\n",
                r.layer,
                shape,
                group(r.params),
                r.rf,
                r.jump,
                format!("{}", r.start),
                r.name
            );
        }
        let t = &self.totals;
        s += &format!("{}\n", "=".repeat(92));
        s += &format!("Total params: {}\n", group(t.total_params));
        s += &format!("Trainable params: {}\n", group(t.trainable_params));
        s += &format!("Non-trainable params: {}\n", group(t.non_trainable_params));
        s += &format!("{line}\n");
        s += &format!("Input size (MB): {:.2}\n", t.input_size_mb);
        s += &format!(
            "Forward/backward pass size (MB): {:.2}\n",
            t.forward_backward_size_mb
        );
        s += &format!("Params size (MB): {:.2}\n", t.params_size_mb);
        s += &format!("Estimated Total Size (MB): {:.2}\n", t.total_size_mb);
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
        assert_eq!(group(7684), "7,684");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}
