//! Max and average pooling with correct gradients, as candle custom ops.
//!
//! candle 0.11.1's `max_pool2d` backward is wrong (a 2×2 pool gives 0.25 at each arg-max instead
//! of 1.0, and with an odd input only one window gets anything), and its `avg_pool2d` backward
//! is wrong whenever the input side is not a multiple of the kernel (it upsamples the gradient
//! over the whole input, so the cropped border gets gradient it never influenced). These ops
//! route gradients as PyTorch does: max — the whole upstream gradient to the first maximum of
//! each window in row-major order; average — `1/k²` of it to each pixel of the window.
//! Any stride (overlapping windows add their contributions), floor mode.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Error, Layout, Result, Shape, Tensor, WithDType};

/// `k×k` max pooling with stride `s` on `B×C×H×W`.
pub fn max_pool2d(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Pool { k, s, avg: false })
}

/// `k×k` average pooling with stride `s` on `B×C×H×W`.
pub fn avg_pool2d(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Pool { k, s, avg: true })
}

struct Pool {
    k: usize,
    s: usize,
    avg: bool,
}

fn dims(shape: &Shape, k: usize, s: usize) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, c, h, w) = shape.dims4()?;
    if k == 0 || s == 0 || h < k || w < k {
        return Err(Error::Msg(format!(
            "pool {k}x{k} stride {s} on a {h}x{w} map"
        )));
    }
    Ok((b * c, h, w, (h - k) / s + 1, (w - k) / s + 1))
}

/// Index (in the plane) of the first maximum of each window.
fn argmax<T: WithDType>(x: &[T], h: usize, w: usize, k: usize, s: usize) -> Vec<usize> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut out = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        for ox in 0..ow {
            let mut best = oy * s * w + ox * s;
            for dy in 0..k {
                for dx in 0..k {
                    let i = (oy * s + dy) * w + ox * s + dx;
                    // PyTorch's rule: strictly greater, or NaN.
                    if x[i] > x[best] || x[i].to_f64().is_nan() {
                        best = i;
                    }
                }
            }
            out.push(best);
        }
    }
    out
}

/// Indices (in the plane) of the pixels of output window `(oy, ox)`.
fn window(oy: usize, ox: usize, w: usize, k: usize, s: usize) -> impl Iterator<Item = usize> {
    (0..k * k).map(move |d| (oy * s + d / k) * w + ox * s + d % k)
}

fn forward<T: WithDType>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    avg: bool,
) -> Vec<T> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    let mut out = Vec::with_capacity(planes * oh * ow);
    for p in 0..planes {
        let plane = &x[p * h * w..(p + 1) * h * w];
        if avg {
            for o in 0..oh * ow {
                let sum = window(o / ow, o % ow, w, k, s).fold(T::zero(), |acc, i| acc + plane[i]);
                out.push(sum * inv);
            }
        } else {
            out.extend(argmax(plane, h, w, k, s).into_iter().map(|i| plane[i]));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn backward<T: WithDType>(
    x: &[T],
    gy: &[T],
    planes: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    avg: bool,
) -> Vec<T> {
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    let mut gx = vec![T::zero(); x.len()];
    for p in 0..planes {
        let g = &mut gx[p * h * w..(p + 1) * h * w];
        let gyp = &gy[p * oh * ow..(p + 1) * oh * ow];
        if avg {
            for (o, &go) in gyp.iter().enumerate() {
                for i in window(o / ow, o % ow, w, k, s) {
                    g[i] += go * inv;
                }
            }
        } else {
            for (o, i) in argmax(&x[p * h * w..(p + 1) * h * w], h, w, k, s)
                .into_iter()
                .enumerate()
            {
                g[i] += gyp[o];
            }
        }
    }
    gx
}

fn slice<'a, T>(v: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(Error::Msg("max pool needs a contiguous input".into())),
    }
}

impl Pool {
    fn backward_typed<T: WithDType>(
        &self,
        arg: &Tensor,
        gy: &Tensor,
        planes: usize,
        h: usize,
        w: usize,
    ) -> Result<Tensor> {
        let (x, g) = (
            arg.flatten_all()?.to_vec1::<T>()?,
            gy.flatten_all()?.to_vec1::<T>()?,
        );
        Tensor::from_vec(
            backward(&x, &g, planes, h, w, self.k, self.s, self.avg),
            arg.shape(),
            arg.device(),
        )
    }
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        if self.avg {
            "under8k-avg-pool2d"
        } else {
            "under8k-max-pool2d"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (planes, h, w, oh, ow) = dims(layout.shape(), self.k, self.s)?;
        let (b, c, _, _) = layout.shape().dims4()?;
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(forward(
                slice(v, layout)?,
                planes,
                h,
                w,
                self.k,
                self.s,
                self.avg,
            )),
            CpuStorage::F64(v) => CpuStorage::F64(forward(
                slice(v, layout)?,
                planes,
                h,
                w,
                self.k,
                self.s,
                self.avg,
            )),
            other => return Err(Error::UnsupportedDTypeForOp(other.dtype(), "pool2d")),
        };
        Ok((out, Shape::from((b, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (planes, h, w, _, _) = dims(arg.shape(), self.k, self.s)?;
        let (arg, gy) = (arg.contiguous()?, grad_res.contiguous()?);
        let gx = match arg.dtype() {
            DType::F32 => self.backward_typed::<f32>(&arg, &gy, planes, h, w)?,
            DType::F64 => self.backward_typed::<f64>(&arg, &gy, planes, h, w)?,
            other => return Err(Error::UnsupportedDTypeForOp(other, "pool2d backward")),
        };
        Ok(Some(gx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle 0.11.1's own `max_pool2d` gives 0.25 at each arg-max of a 2×2 pool (and nothing to
    /// most windows of an odd-sized input); PyTorch — and ours — give the whole gradient, 1.0.
    #[test]
    fn max_pool_gradient_goes_wholly_to_the_argmax() {
        use candle_core::{Device, Var};
        let dev = Device::Cpu;
        let x = Var::from_vec(
            (0..16).map(|v| ((v * 7) % 16) as f32).collect::<Vec<_>>(),
            (1, 1, 4, 4),
            &dev,
        )
        .unwrap();
        let g = max_pool2d(&x, 2, 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Values: 0 7 14 5 / 12 3 10 1 / 8 15 6 13 / 4 11 2 9 → window maxima 12, 14, 15, 13.
        let mut want = vec![0.0f32; 16];
        for i in [4, 2, 9, 11] {
            want[i] = 1.0;
        }
        assert_eq!(g, want);

        let x = Var::from_vec(
            (0..25).map(|v| ((v * 11) % 25) as f32).collect::<Vec<_>>(),
            (1, 1, 5, 5),
            &dev,
        )
        .unwrap();
        let y = max_pool2d(&x, 2, 2).unwrap();
        assert_eq!(y.dims(), [1, 1, 2, 2]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(g.iter().filter(|&&v| v == 1.0).count(), 4, "{g:?}");
        assert_eq!(g.iter().sum::<f32>(), 4.0);
    }
}
