//! What the optimizers' one-pass updates share ([`crate::sgd`], [`crate::adam`]): the value
//! types they compute in, and a tensor's values read where they lie.
//!
//! An update in one pass applies each of candle's ops to each value in the same order, so it
//! gives the ops' bits. candle's `x·a` and `x + a` with a number `a` compute `x·T(a) + T(b)`
//! (`b` 0, or `a` with `x` times 1), each rounded once: the passes add the same zero and
//! multiply by the same one.

use candle_core::{Shape, Storage, StorageRef, Tensor, WithDType};

/// The values a one-pass update computes in: `f32` and `f64`.
pub(crate) trait Value:
    WithDType
    + std::ops::Add<Output = Self>
    + std::ops::AddAssign
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn sqrt(self) -> Self;
}

impl Value for f32 {
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Value for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// A contiguous tensor's values as `T`, read where they lie: held while [`Values::get`]'s
/// slice is.
pub(crate) struct Values<'a, T> {
    storage: StorageRef<'a>,
    range: (usize, usize),
    _t: std::marker::PhantomData<T>,
}

impl<T: WithDType> Values<'_, T> {
    pub(crate) fn get(&self) -> &[T] {
        match &*self.storage {
            Storage::Cpu(c) => &c.as_slice::<T>().expect("checked")[self.range.0..self.range.1],
            _ => unreachable!("checked"),
        }
    }
}

/// `t`'s values, or `None` where it is not a contiguous CPU tensor of `T` and of `shape` (the
/// ops then run, and a state tensor of another shape, say from a checkpoint, gets their error).
pub(crate) fn values<'a, T: WithDType>(t: &'a Tensor, shape: &Shape) -> Option<Values<'a, T>> {
    if t.shape() != shape {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let ok = match &*storage {
        Storage::Cpu(c) => c.as_slice::<T>().is_ok(),
        _ => false,
    };
    match (ok, layout.contiguous_offsets()) {
        (true, Some(range)) => Some(Values {
            storage,
            range,
            _t: std::marker::PhantomData,
        }),
        _ => None,
    }
}

/// A state tensor's values where there is one: `Some(None)` without, `None` where they cannot
/// be read.
pub(crate) fn state<'a, T: WithDType>(
    t: Option<&'a Tensor>,
    shape: &Shape,
) -> Option<Option<Values<'a, T>>> {
    match t {
        None => Some(None),
        Some(t) => values::<T>(t, shape).map(Some),
    }
}

/// A state's values, or `zeros` where there is none yet.
pub(crate) fn or_zeros<'a, T: WithDType>(t: &'a Option<Values<'_, T>>, zeros: &'a [T]) -> &'a [T] {
    t.as_ref().map_or(zeros, Values::get)
}

/// What the optimizers' tests of their one pass share.
#[cfg(test)]
pub(crate) mod tests {
    use candle_core::Tensor;
    use proptest::prelude::*;

    use super::Value;

    /// An optimizer's update over several steps from `init` with `grads`, by the one pass or by
    /// the ops: the bits of what the test compares.
    pub(crate) trait Steps {
        fn run<T: Value>(&self, init: &[T], grads: &[Vec<T>], one_pass: bool) -> Vec<Vec<u64>>;
    }

    /// The values a case runs on: from `seed`, `n` initial values and `steps` gradients, in
    /// `f64` where `wide`, else in `f32`.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Case {
        seed: u64,
        n: usize,
        steps: usize,
        wide: bool,
    }

    prop_compose! {
        /// Cases of 1 to 47 values over 1 to 4 steps.
        pub(crate) fn cases()(
            seed in any::<u64>(),
            n in 1usize..48,
            steps in 1usize..5,
            wide in any::<bool>(),
        ) -> Case {
            Case { seed, n, steps, wide }
        }
    }

    /// `s`'s bits by the one pass and by the ops on `case`'s values.
    pub(crate) fn both_ways(s: &impl Steps, case: Case) -> [Vec<Vec<u64>>; 2] {
        fn go<T: Value>(s: &impl Steps, c: Case) -> [Vec<Vec<u64>>; 2] {
            let grads: Vec<Vec<T>> = (0..c.steps as u64)
                .map(|t| values_of(c.seed.wrapping_add(1 + t), c.n))
                .collect();
            let init = values_of::<T>(!c.seed, c.n);
            [true, false].map(|one_pass| s.run(&init, &grads, one_pass))
        }
        match case.wide {
            true => go::<f64>(s, case),
            false => go::<f32>(s, case),
        }
    }

    /// A tensor's values as bits.
    pub(crate) fn bits<T: Value>(t: &Tensor) -> Vec<u64> {
        let v = t.flatten_all().unwrap().to_vec1::<T>().unwrap();
        v.iter().map(|x| x.to_f64().to_bits()).collect()
    }

    /// Values from `seed`, signed zeros among them: uniform in [−2, 2) at scales 1 to 10⁻⁶ (so
    /// that `v` spans orders of magnitude and `ε` matters), every seventh +0, every eleventh −0.
    fn values_of<T: Value>(seed: u64, n: usize) -> Vec<T> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                // xorshift64*: any spread of values does.
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
                match (i % 7, i % 11) {
                    (0, _) => 0.0,
                    (_, 0) => -0.0,
                    _ => (r * 4.0 - 2.0) * 10f64.powi(-((i % 7) as i32)),
                }
            })
            .map(T::from_f64)
            .collect()
    }
}
