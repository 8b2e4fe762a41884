//! The kernel paths and `fma_dispatch!`: a kernel compiled three times (portable, AVX2 + FMA,
//! AVX-512), one chosen at run time. A leaf, declared before the kernel modules so that they can
//! use the macro.
//!
//! The three compilations run the same operations in the same order: every output a kernel
//! vectorises is an independent lane, every reduction has a fixed number of partial sums folded
//! in a fixed order, and `Real::mul_add` rounds once everywhere (a `vfmadd` with AVX2 or
//! AVX-512, a library call otherwise). The compiler vectorises to whatever width the path
//! allows without reassociating floats, so the paths give the same bits.

use std::sync::atomic::{AtomicU8, Ordering};

/// Which compilation of the engine's kernels runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Baseline x86-64 (or any other architecture): no FMA instructions, slow.
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 (F and VL) with AVX2 + FMA.
    Avx512,
}

/// 0: not chosen yet; otherwise `1 + path as u8`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The kernel path is not available on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} kernels need CPU features this machine lacks")]
pub struct PathUnavailable(pub KernelPath);

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "AVX2",
            KernelPath::Avx512 => "AVX-512",
        })
    }
}

impl KernelPath {
    const ALL: [KernelPath; 3] = [KernelPath::Portable, KernelPath::Avx2, KernelPath::Avx512];

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                KernelPath::Portable => true,
                KernelPath::Avx2 => has!("avx2") && has!("fma"),
                KernelPath::Avx512 => {
                    has!("avx2") && has!("fma") && has!("avx512f") && has!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == KernelPath::Portable
        }
    }

    /// The paths this CPU can run, slowest first.
    pub fn available() -> Vec<KernelPath> {
        Self::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// The widest available path (the default).
    pub fn best() -> KernelPath {
        *Self::available()
            .last()
            .expect("portable is always available")
    }

    /// The path the kernels run now: the one last [`use_path`](Self::use_path) chose, else
    /// [`best`](Self::best).
    #[inline]
    pub fn active() -> KernelPath {
        match ACTIVE.load(Ordering::Relaxed) {
            1 => KernelPath::Portable,
            2 => KernelPath::Avx2,
            3 => KernelPath::Avx512,
            _ => {
                let best = Self::best();
                ACTIVE.store(1 + best as u8, Ordering::Relaxed);
                best
            }
        }
    }

    /// The active path when `T` is `f32` and the path has vectors: what the explicit-vector
    /// kernels run on. `None` for `f64` or on the portable path.
    #[inline]
    pub(crate) fn vectors_for<T: 'static>() -> Option<KernelPath> {
        let path = Self::active();
        path.has_vectors_for::<T>().then_some(path)
    }

    /// Whether `T` is `f32` and this path has vectors, whether or not the CPU has it.
    #[inline]
    fn has_vectors_for<T: 'static>(self) -> bool {
        let f32 = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
        f32 && self != KernelPath::Portable
    }

    /// Whether the explicit-vector kernels run on this path for `T`: `f32`, a path with vectors,
    /// and the CPU has it. For kernels whose caller names the path (the tests name each one);
    /// [`vectors_for`](Self::vectors_for) takes the active path, which the CPU always has.
    #[inline]
    pub(crate) fn runs_vectors<T: 'static>(self) -> bool {
        self.has_vectors_for::<T>() && self.is_available()
    }

    /// Makes every later kernel call in this process run `path` (for comparisons and tests:
    /// results are the same on every path, only the speed differs).
    pub fn use_path(path: KernelPath) -> Result<(), PathUnavailable> {
        if !path.is_available() {
            return Err(PathUnavailable(path));
        }
        ACTIVE.store(1 + path as u8, Ordering::Relaxed);
        Ok(())
    }
}

/// Defines `fn $name<T: Real>(…)` whose body is compiled three times: as is, with AVX2 + FMA,
/// and with AVX-512; [`KernelPath::active`] picks one per call.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<T: Real>($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name<T: Real>($($arg: $ty),*) {
            $(#[$m])*
            #[inline(always)]
            fn imp<T: Real>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                $(#[$m])*
                #[target_feature(enable = "avx2,fma")]
                fn fast<T: Real>($($arg: $ty),*) {
                    imp($($arg),*)
                }
                $(#[$m])*
                #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
                fn wide<T: Real>($($arg: $ty),*) {
                    imp($($arg),*)
                }
                match $crate::engine::KernelPath::active() {
                    // SAFETY: `active` returns a path only when the CPU has its features.
                    #[allow(unsafe_code)]
                    $crate::engine::KernelPath::Avx512 => return unsafe { wide($($arg),*) },
                    #[allow(unsafe_code)]
                    $crate::engine::KernelPath::Avx2 => return unsafe { fast($($arg),*) },
                    $crate::engine::KernelPath::Portable => {}
                }
            }
            imp($($arg),*)
        }
    };
}
