//! The candle glue: a [`Pass`] is a [`CustomOp2`] of (input, all parameters flattened).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Error, Layout, Result, Shape, Storage, Tensor};

use super::pass::{AnySaved, Pass, Saved};
use super::plan::Pooled;

fn slice<'a, T>(v: &'a [T], layout: &Layout, what: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(Error::Msg(format!("fast path: {what} must be contiguous"))),
    }
}

impl Pass {
    fn check(&self, x: &Shape, p: &Shape) -> Result<usize> {
        let e = &*self.engine;
        let dims = x.dims();
        if dims.is_empty() || dims[1..].iter().product::<usize>() != e.sizes[0] {
            return Err(Error::Msg(format!(
                "fast path: input of shape {x:?} does not fit the net ({} values per image)",
                e.sizes[0]
            )));
        }
        let largest = e.sizes.iter().max().copied().unwrap_or(0);
        if (dims[0] as u64) * (largest as u64) > u32::MAX as u64 {
            return Err(Error::Msg(format!(
                "fast path: a batch of {} is too large for this net (at most {} images)",
                dims[0],
                u32::MAX as usize / largest.max(1)
            )));
        }
        if p.elem_count() != e.n_params {
            return Err(Error::Msg(format!(
                "fast path: {} parameters given, the net has {}",
                p.elem_count(),
                e.n_params
            )));
        }
        Ok(dims[0])
    }

    fn typed_bwd<T: Pooled + candle_core::WithDType>(
        &self,
        s: &Saved<T>,
        arg1: &Tensor,
        arg2: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = arg1.dim(0)?;
        let params = arg2.flatten_all()?.to_vec1::<T>()?;
        let g = grad_res.flatten_all()?.to_vec1::<T>()?;
        // The forward's input, read where it lies: the forward keeps no copy of it, and a
        // tensor's values never change.
        let (storage, layout) = arg1.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            return Err(Error::Msg("fast path: the input must be on the CPU".into()));
        };
        let x = slice(cpu.as_slice::<T>()?, layout, "input")?;
        let (gx, gp) = self.backward(s, x, &params, &g, n);
        drop(storage);
        let gx = match gx {
            Some(v) => Some(Tensor::from_vec(v, arg1.shape(), arg1.device())?),
            None => None,
        };
        Ok((gx, Some(Tensor::from_vec(gp, arg2.shape(), arg2.device())?)))
    }
}

impl CustomOp2 for Pass {
    fn name(&self) -> &'static str {
        "under8k-engine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = self.check(l1.shape(), l2.shape())?;
        let mut shape = vec![n];
        shape.extend(&self.engine.out_dims);
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(p)) => {
                let (out, saved) = self.forward(slice(x, l1, "input")?, slice(p, l2, "params")?, n);
                *self.saved.lock().expect("saved lock") = saved.map(AnySaved::F32);
                CpuStorage::F32(out)
            }
            (CpuStorage::F64(x), CpuStorage::F64(p)) => {
                let (out, saved) = self.forward(slice(x, l1, "input")?, slice(p, l2, "params")?, n);
                *self.saved.lock().expect("saved lock") = saved.map(AnySaved::F64);
                CpuStorage::F64(out)
            }
            _ => {
                return Err(Error::UnsupportedDTypeForOp(s1.dtype(), "under8k engine"));
            }
        };
        Ok((out, Shape::from(shape)))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().expect("saved lock").take();
        match saved {
            Some(AnySaved::F32(s)) if arg1.dtype() == DType::F32 => {
                self.typed_bwd(&s, arg1, arg2, grad_res)
            }
            Some(AnySaved::F64(s)) if arg1.dtype() == DType::F64 => {
                self.typed_bwd(&s, arg1, arg2, grad_res)
            }
            _ => Err(Error::Msg(
                "fast path: backward needs a forward that kept its activations (and runs once)"
                    .into(),
            )),
        }
    }
}
