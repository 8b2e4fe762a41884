//! `fma_dispatch!`: a kernel compiled twice, chosen at run time. Declared before the kernel
//! modules so that they can use it.

/// Defines `fn $name<T: Real>(…)` whose body is compiled twice: as is, and with AVX2 + FMA
/// enabled, the latter chosen at run time when the CPU has them. `Real::mul_add` is a single
/// `vfmadd` there and a (slow but identical) library call otherwise: both round once, so the
/// two versions give the same bits.
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
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: `fast` only needs AVX2 and FMA, which the CPU was just found to have.
                    #[allow(unsafe_code)]
                    return unsafe { fast($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
