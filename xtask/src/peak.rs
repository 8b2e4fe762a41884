//! The machine's FP32 peak as `cargo xtask bench` measures it: a register-resident FMA loop on
//! every thread of rayon's pool (the threads the engine runs on), with the widest FMA the CPU
//! has. Independent accumulator chains hide the FMA latency, so the loop runs at the FMA units'
//! throughput: the physical limit every figure is set against.

use std::time::Instant;

/// A measured peak.
pub struct Peak {
    /// Floating-point operations per second, all threads together (a multiply-add counts 2).
    pub flops: f64,
    /// The instructions the loop used.
    pub isa: &'static str,
    /// Threads that ran it at once.
    pub threads: usize,
}

/// Independent accumulators: above latency × pipes (4 × 2 on current AMD and Intel cores).
const CHAINS: usize = 12;

/// Runs each loop the CPU can run on every thread at once for about `seconds`, best of three
/// rounds, and gives each loop's figure (the fastest is the machine's peak; the AVX2 loop's is
/// the peak the AVX2 kernels can reach on this core).
pub fn measure_each(seconds: f64) -> Vec<Peak> {
    kernels()
        .into_iter()
        .map(|(isa, lanes, run)| measure_one(isa, lanes, run, seconds))
        .collect()
}

fn measure_one(isa: &'static str, lanes: usize, run: fn(u64) -> f32, seconds: f64) -> Peak {
    let threads = rayon::current_num_threads();
    // Calibrate: iterations per thread for about `seconds`.
    let t = Instant::now();
    std::hint::black_box(run(1_000_000));
    let per_iter = t.elapsed().as_secs_f64() / 1e6;
    let iters = ((seconds / per_iter.max(1e-12)) as u64).max(1_000);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sums = rayon::broadcast(|_| std::hint::black_box(run(iters)));
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(sums);
        let flops = (threads as u64 * iters * (CHAINS * lanes * 2) as u64) as f64 / dt;
        best = best.max(flops);
    }
    Peak {
        flops: best,
        isa,
        threads,
    }
}

type Loop = (&'static str, usize, fn(u64) -> f32);

/// The loops this CPU runs: (name, f32 lanes per FMA, the loop). Both vector widths are tried:
/// some cores (Zen 4) run a 512-bit FMA as two 256-bit halves, others (Zen 5) at full width.
fn kernels() -> Vec<Loop> {
    let mut v: Vec<Loop> = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            v.push(("AVX2 FMA", 8, x86::avx2));
        }
        if has!("avx512f") {
            v.push(("AVX-512 FMA", 16, x86::avx512));
        }
    }
    if v.is_empty() {
        v.push(("scalar mul_add", 1, scalar));
    }
    v
}

fn scalar(iters: u64) -> f32 {
    let (a, b) = std::hint::black_box((0.999_999f32, 1e-7f32));
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..iters {
        for v in &mut acc {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    pub fn avx2(iters: u64) -> f32 {
        // SAFETY: listed by `kernels` only when the CPU has AVX2 and FMA.
        unsafe { avx2_loop(iters) }
    }

    pub fn avx512(iters: u64) -> f32 {
        // SAFETY: listed by `kernels` only when the CPU has AVX-512F.
        unsafe { avx512_loop(iters) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn avx2_loop(iters: u64) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    fn avx512_loop(iters: u64) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in acc {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }
}
