use proptest::prelude::*;

use super::*;
use crate::engine::winograd::tests::values;

/// Where position `p` goes: rows of `row` positions `gap` apart, from `front` on (in values).
fn place(p: usize, row: usize, gap: usize, front: usize) -> usize {
    (front + p / row * (row + gap) + p % row) * LANES
}

proptest! {
    /// Into the lanes, with and without BatchNorm's input gradient: the definition, one value
    /// at a time (each destination lane the source value, or its `bn_input_value`; lanes from
    /// `m` on zero; nothing else written), on every kernel path.
    #[test]
    fn into_lanes_is_the_definition(
        m in 0usize..=LANES,
        n in 0usize..40,
        extra in 0usize..5,
        (row, gap, front) in (1usize..12, 0usize..3, 0usize..3),
        with_bn in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let stride = n + extra;
        let src = values::<f32>(LANES * stride, seed);
        let y = values::<f32>(LANES * stride, seed + 1);
        let (mean, k) = (0.25f32, (1.5f32, -0.75f32, 0.125f32));
        let bn = with_bn.then_some(Bn { y: &y, mean, k });
        let len = place(n, row, gap, front) + 2 * LANES;
        let runs = crate::engine::on_every_path(|| {
            let mut dst = vec![7.0f32; len];
            into_lanes(&src, stride, m, n, |p| place(p, row, gap, front), bn, &mut dst);
            dst
        });
        let mut want = vec![7.0f32; len];
        for p in 0..n {
            for i in 0..LANES {
                let at = i * stride + p;
                want[place(p, row, gap, front) + i] = match (i < m, with_bn) {
                    (false, _) => 0.0,
                    (true, false) => src[at],
                    (true, true) => act::bn_input_value(src[at], y[at], mean, k),
                };
            }
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (path, got) in &runs {
            prop_assert!(bits(got) == bits(&want), "{path}");
        }
    }

    /// Out of the lanes: the definition, one value at a time (the first `m` lanes of each
    /// position to their images; nothing else written), on every kernel path.
    #[test]
    fn out_of_lanes_is_the_definition(
        m in 0usize..=LANES,
        n in 0usize..40,
        extra in 0usize..5,
        (row, gap, front) in (1usize..12, 0usize..3, 0usize..3),
        seed in 0u64..1000,
    ) {
        let stride = n + extra;
        let src = values::<f32>(place(n, row, gap, front) + 2 * LANES, seed);
        let runs = crate::engine::on_every_path(|| {
            let mut dst = vec![7.0f32; LANES * stride];
            out_of_lanes(&src, |p| place(p, row, gap, front), m, n, stride, &mut dst);
            dst
        });
        let mut want = vec![7.0f32; LANES * stride];
        for p in 0..n {
            for i in 0..m {
                want[i * stride + p] = src[place(p, row, gap, front) + i];
            }
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for (path, got) in &runs {
            prop_assert!(bits(got) == bits(&want), "{path}");
        }
    }
}
