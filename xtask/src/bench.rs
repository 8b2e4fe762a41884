//! `cargo xtask bench`: throughput of the real training step (augmentation, dropout,
//! BatchNorm in training mode, momentum SGD, all included) and of evaluation, for the fast
//! engine, the reference path and — when `python3` can import torch — PyTorch, in the same run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use rand_chacha::{ChaCha8Rng, rand_core::SeedableRng};
use under8k_model::{ArchSpec, KernelPath, Kernels, Net};
use under8k_train::TrainConfig;
use under8k_train::run;
use under8k_train::sgd::{Sgd, SgdConfig};

use crate::cores;
use crate::steal::{self, CpuTimes};

/// `cargo xtask bench` options.
#[derive(clap::Args)]
pub struct Args {
    /// Timed training batches of 128 on the fast path (the reference path gets 3).
    #[arg(long, default_value_t = 150)]
    batches: usize,
    /// MNIST directory (fetched there if missing).
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    /// Skip PyTorch even when it is importable.
    #[arg(long)]
    no_torch: bool,
    /// Rounds of the fast engine's measurements, the kernel paths taking turns, the peak
    /// measured again before each round and after the last; the medians are reported, shares
    /// of peak each against the higher of the two peaks around its round (the machines are
    /// shared and drift), and each target's line lists every round's share. The thread rows
    /// take as many rounds, at most 3.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// End to end: this many alternating pairs of a whole `under8k train --attempt 3` run and
    /// the same recipe in PyTorch (needs torch), with `under8k` built from this checkout first;
    /// the median ratio and our peak memory are checked against the targets. 0 skips it (a
    /// 15-epoch pair takes minutes).
    #[arg(long, default_value_t = 0)]
    pairs: usize,
    /// Epochs of each end-to-end run.
    #[arg(long, default_value_t = 15)]
    pair_epochs: usize,
}

struct Figures {
    train: f64,
    eval: f64,
}

impl Figures {
    /// These rates as shares of `peak` FLOP/s, in percent: training at `work.train` FLOP an
    /// image, evaluation at `work.forward`.
    fn shares(&self, work: &Work, peak: f64) -> Figures {
        Figures {
            train: share(work.train, self.train, peak),
            eval: share(work.forward, self.eval, peak),
        }
    }
}

/// `rate` images a second at `flops` FLOP an image as a share of `peak` FLOP/s, in percent.
fn share(flops: f64, rate: f64, peak: f64) -> f64 {
    100.0 * flops * rate / peak
}

/// The peaks one round's rates are compared with: the widest loop's, and the AVX2 loop's where
/// that is lower (what the AVX2 kernels can reach on this core).
#[derive(Clone, Copy)]
struct Peaks {
    best: f64,
    avx2: Option<f64>,
}

impl Peaks {
    fn measure(seconds: f64) -> Self {
        Self::of_loops(&crate::peak::measure_each(seconds))
    }

    /// The widest loop's peak `best` and the AVX2 loop's, kept only where it is lower.
    fn new(best: f64, avx2: Option<f64>) -> Self {
        Peaks {
            best,
            avx2: avx2.filter(|&p| p < best),
        }
    }

    fn of_loops(each: &[crate::peak::Peak]) -> Self {
        let best = each.iter().map(|p| p.flops).fold(0.0, f64::max);
        Self::new(
            best,
            each.iter().find(|p| p.isa == "AVX2 FMA").map(|p| p.flops),
        )
    }

    fn of(&self, path: KernelPath) -> f64 {
        match path {
            KernelPath::Avx2 => self.avx2.unwrap_or(self.best),
            _ => self.best,
        }
    }
}

/// A kernel path's rates, the median over the rounds, and its shares of peak in percent, each
/// the median over the rounds of a round's rate against the peak measured around it
/// ([`around_each`]: the machines drift by tens of percent within minutes, the peak with them);
/// and the median of those peaks; and each round's shares, in the order measured.
struct PathFigures {
    path: KernelPath,
    rates: Figures,
    shares: Figures,
    peak: f64,
    each: Vec<Figures>,
}

/// How long each reading of the cores' round trip ([`cores::round_trip`]) hands its line back
/// and forth.
const TRIP_TIME: Duration = Duration::from_millis(20);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The order in which round `round` measures `n` paths: each path first in turn (the paths
/// rotated by the round's number).
fn round_order(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n)
}

/// Each round's peaks from the peaks measured before every round and after the last
/// (`measured`, one more than the rounds): the higher of the two around it, loop by loop. A
/// peak loop the machine slowed reads low, and a round's share against it high (a round once
/// read 121.9 % of peak in evaluation); the higher of two measurements is the likelier peak.
fn around_each(measured: &[Peaks]) -> Vec<Peaks> {
    measured
        .windows(2)
        .map(|w| {
            let avx2 = w[0].of(KernelPath::Avx2).max(w[1].of(KernelPath::Avx2));
            Peaks::new(w[0].best.max(w[1].best), Some(avx2))
        })
        .collect()
}

/// [`PathFigures`] of one path from its rounds: each round's rates and that round's peak.
fn path_figures(path: KernelPath, rounds: &[(Figures, f64)], work: &Work) -> PathFigures {
    let rates = Figures {
        train: median(rounds.iter().map(|(f, _)| f.train).collect()),
        eval: median(rounds.iter().map(|(f, _)| f.eval).collect()),
    };
    let each: Vec<Figures> = rounds.iter().map(|(f, pk)| f.shares(work, *pk)).collect();
    let shares = Figures {
        train: median(each.iter().map(|f| f.train).collect()),
        eval: median(each.iter().map(|f| f.eval).collect()),
    };
    PathFigures {
        path,
        rates,
        shares,
        peak: median(rounds.iter().map(|(_, pk)| *pk).collect()),
        each,
    }
}

/// One epoch of `batches` batches through the real training loop (into a temporary
/// directory), then evaluation on `test` images.
fn measure(
    mnist: &under8k_mnist_data::Mnist,
    kernels: Kernels,
    batches: usize,
    test: usize,
) -> Result<Figures> {
    measure_in(mnist, kernels, batches, test, "")
}

/// [`measure`] into a temporary directory named with `tag` (two at once need two).
fn measure_in(
    mnist: &under8k_mnist_data::Mnist,
    kernels: Kernels,
    batches: usize,
    test: usize,
    tag: &str,
) -> Result<Figures> {
    let mut c = TrainConfig::attempt(3)?;
    c.epochs = 1;
    c.train_limit = Some(128 * batches);
    c.test_limit = Some(test);
    c.fit_schedule(mnist.train.len());
    c.kernels = kernels;
    let dir = std::env::temp_dir().join(format!(
        "under8k-bench-{}-{kernels:?}{tag}",
        std::process::id()
    ));
    let out = run::train(
        &c,
        mnist,
        &dir,
        run::Start::Fresh,
        &mut (),
        &AtomicBool::new(false),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let e = out?.history.epochs.remove(0);
    Ok(Figures {
        train: e.train_img_per_s,
        eval: e.test_total as f64 / e.eval_seconds.max(1e-9),
    })
}

/// Whether this bench runs PyTorch: not `--no-torch`, and `python3` imports torch (asked once:
/// the import takes seconds).
fn with_torch(args: &Args) -> bool {
    !args.no_torch && crate::pytorch::torch_importable()
}

/// PyTorch's figures (with [`with_torch`]): its bare step (no augmentation, its best case) and
/// with the rotation.
fn torch(args: &Args, threads: usize, with_torch: bool) -> Option<Result<(Figures, f64)>> {
    if !with_torch {
        return None;
    }
    Some((|| {
        let out = Command::new("python3")
            .arg("scripts/bench_torch.py")
            .arg(&args.data)
            .arg(threads.to_string())
            .arg(args.batches.to_string())
            .output()
            .context("running scripts/bench_torch.py")?;
        anyhow::ensure!(
            out.status.success(),
            "bench_torch.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok((
            Figures {
                train: v["train_img_per_s"].as_f64().context("train figure")?,
                eval: v["eval_img_per_s"].as_f64().context("eval figure")?,
            },
            v["train_aug_img_per_s"].as_f64().context("train figure")?,
        ))
    })())
}

/// Convolution FLOPs per image of one training step and of one forward pass, the engine's own
/// time per batch of 128 (its steps' forward and backward, summed) and the whole step's time
/// (the engine, candle's graph and loss, the optimizer, the accuracy) over all the loops, and
/// each loop's share of the loop around the engine: the difference of the two in that loop, in
/// percent of its step, never negative ([`around_share`]).
struct Work {
    train: f64,
    forward: f64,
    engine_ms: f64,
    step_ms: f64,
    around: Vec<f64>,
}

/// The loop around the engine in percent of a step: what a loop's steps took (`step_s`) less
/// the engine's own time in them (`engine_s`), never negative.
fn around_share(step_s: f64, engine_s: f64) -> f64 {
    100.0 * (step_s - engine_s).max(0.0) / step_s
}

/// The seed net on the fast engine with numerics `version`, a fixed batch of 128 and its
/// labels.
fn seed_net(version: u32) -> Result<(Net, Tensor, Tensor)> {
    let dev = Device::Cpu;
    let net = Net::new(
        &ArchSpec::seed(),
        &mut ChaCha8Rng::seed_from_u64(1),
        ChaCha8Rng::seed_from_u64(2),
        DType::F32,
        &dev,
    )?
    .with_numerics(version)?;
    let x = pattern_images(128)?;
    let y = Tensor::from_vec((0..128u32).map(|i| i % 10).collect::<Vec<_>>(), 128, &dev)?;
    Ok((net, x, y))
}

/// `n` images of a fixed pattern, not candle's unseedable RNG: the timings do not depend on
/// the values.
fn pattern_images(n: usize) -> Result<Tensor> {
    let pattern = (0..n * 28 * 28).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5);
    Ok(Tensor::from_vec(
        pattern.collect::<Vec<_>>(),
        (n, 1, 28, 28),
        &Device::Cpu,
    )?)
}

/// The training loop's step (`run::step`): forward, loss, backward, optimizer, accuracy; on a
/// thread of rayon's pool, as the loop runs it (beside the next batch's assembly).
fn train_step(net: &Net, opt: &mut Sgd, x: &Tensor, y: &Tensor) -> Result<()> {
    rayon::scope(|_| {
        let logp = net.forward_t(x, true)?;
        let loss = candle_nn::loss::nll(&logp, y)?;
        let _ = loss.to_scalar::<f32>()?;
        opt.step(&loss.backward()?)?;
        let _ = logp
            .argmax(candle_core::D::Minus1)?
            .eq(y)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()?;
        Ok(())
    })
}

/// The engine's per-layer table over `loops` loops of `batches` steps each, and in each loop
/// the loop around the engine: one loop alone once read 15.9 % where the others of its day read
/// 3 % (docs/PERFORMANCE.md, forty-ninth pass), so the target's line takes their median.
fn per_layer(batches: usize, loops: usize) -> Result<Work> {
    let (net, x, y) = seed_net(under8k_model::NUMERICS_VERSION)?;
    anyhow::ensure!(net.set_profiling(false), "the seed net runs on the engine");
    let mut opt = Sgd::new(net.named_params(), SgdConfig::momentum(0.01, 0.9))?;
    let mut step = || train_step(&net, &mut opt, &x, &y);
    step()?;
    net.set_profiling(true);
    let engine_s = || -> f64 { net.profile().iter().map(|s| s.forward + s.backward).sum() };
    let (mut total, mut around) = (0.0, vec![]);
    for _ in 0..loops.max(1) {
        let before = engine_s();
        let t = Instant::now();
        for _ in 0..batches {
            step()?;
        }
        let took = t.elapsed().as_secs_f64();
        around.push(around_share(took, engine_s() - before));
        total += took;
    }
    let batches = batches * around.len();
    let total = total * 1e3 / batches as f64;
    let prof = net.profile();
    net.set_profiling(false);
    println!(
        "\nfast engine ({} kernels), ms per batch of 128 (forward + backward, no data loading or optimizer),",
        KernelPath::active()
    );
    println!("and each convolution's GFLOP/s:");
    println!(
        "{:>24} {:>9} {:>9} {:>9} {:>9}",
        "step", "forward", "backward", "GFLOP/s", "GFLOP/s"
    );
    let (mut f, mut b) = (0.0, 0.0);
    let images = 128.0 * batches as f64;
    let gflops = |flops: f64, s: f64| match flops > 0.0 {
        true => format!("{:.1}", flops * images / s / 1e9),
        false => String::new(),
    };
    for s in &prof {
        let (sf, sb) = (
            s.forward * 1e3 / batches as f64,
            s.backward * 1e3 / batches as f64,
        );
        f += sf;
        b += sb;
        println!(
            "{:>24} {sf:>9.2} {sb:>9.2} {:>9} {:>9}",
            s.name,
            gflops(s.forward_flops, s.forward),
            gflops(s.backward_flops, s.backward)
        );
    }
    println!(
        "{:>24} {f:>9.2} {b:>9.2}   (whole step incl. candle graph, loss, optimizer, accuracy: {total:.2})",
        "sum"
    );
    let forward: f64 = prof.iter().map(|s| s.forward_flops).sum();
    let backward: f64 = prof.iter().map(|s| s.backward_flops).sum();
    Ok(Work {
        train: forward + backward,
        forward,
        engine_ms: f + b,
        step_ms: total,
        around,
    })
}

/// The bench's first lines: the loop that read highest, the peak, then every other loop's
/// reading. Where two loops run at one rate (a Zen 4 splits each 512-bit operation in two),
/// either may read higher, and the other must not go unshown.
fn peak_lines(peaks: &[crate::peak::Peak]) -> Vec<String> {
    let peak = peaks
        .iter()
        .max_by(|a, b| a.flops.total_cmp(&b.flops))
        .expect("the scalar loop runs everywhere");
    let first = format!(
        "peak: {:.1} GFLOP/s FP32 ({} loop, register-resident, on {} threads at once)",
        peak.flops / 1e9,
        peak.isa,
        peak.threads
    );
    let others = peaks.iter().filter(|p| p.isa != peak.isa);
    std::iter::once(first)
        .chain(others.map(|p| {
            format!(
                "       {:.1} GFLOP/s with the {} loop",
                p.flops / 1e9,
                p.isa
            )
        }))
        .collect()
}

/// Training and evaluation on rayon pools of 1 and 2 threads (default kernel path): img/s, and
/// the efficiency of 2 threads against twice 1. Then two pools of 1 thread at once, each with
/// its own loop: what the two cores give when nothing is shared but the machine (its caches,
/// memory and clocks), against which the 2-thread loop's own parallel loss reads apart from
/// the machine's. Each of the three runs `rounds` times, at most [`THREAD_ROUNDS`], each first in
/// turn; the rows show the medians ([`ThreadMedians`]). Each row's training rate also as a share
/// of the peak ([`ThreadShares`]), for `work`'s FLOP per image: the higher of the peaks measured
/// just before and just after these rows ([`rows_peak`]), by the rounds' rule, not the bench's
/// first reading, which once read the lowest of its run; `threads`, the threads the peak loop
/// ran on.
fn scaling(
    mnist: &under8k_mnist_data::Mnist,
    batches: usize,
    work: &Work,
    threads: usize,
    rounds: usize,
) -> Result<()> {
    let n_rounds = rounds.clamp(1, THREAD_ROUNDS);
    let (before, trip) = (Peaks::measure(0.25), cores::round_trip(TRIP_TIME));
    let m = ThreadMedians::of(&thread_rounds(mnist, batches, n_rounds)?);
    let (one, two, both) = (m.one, m.two, m.both);
    let trips = [trip, cores::round_trip(TRIP_TIME)];
    let peak = rows_peak([before, Peaks::measure(0.25)], KernelPath::active());
    let shares = ThreadShares::of(work.train, peak, threads, [one.train, two.train, both]);
    println!(
        "\nthe thread rows against the higher of the peaks measured just before and after them: {:.1} GFLOP/s",
        peak / 1e9
    );
    println!(
        "the cores' round trip (a cache line between two threads and back) just before and after them: {}",
        cores::line(&trips)
    );
    match n_rounds {
        1 => println!("each row one measurement (--rounds 1)"),
        n => println!(
            "each row the median of {n} rounds, each of the three measurements first in turn"
        ),
    }
    println!(
        "\n| threads | train img/s | eval img/s | train % of peak (1 thread: of one core's, the peak / {threads}) |\n|---|---|---|---|"
    );
    println!(
        "| 1 | {:.0} | {:.0} | {:.1} % |",
        one.train, one.eval, shares.one
    );
    println!(
        "| 2 | {:.0} | {:.0} | {:.1} % |",
        two.train, two.eval, shares.two
    );
    println!(
        "| 1 and 1, two loops at once | {both:.0} | | {:.1} % |",
        shares.both
    );
    let t = Scaling::of(one.train, two.train, both);
    println!(
        "| efficiency of 2 | {:.0} % | {:.0} % | |",
        t.efficiency,
        efficiency(one.eval, two.eval)
    );
    println!(
        "| two loops at once against twice 1 (what the machine's shared parts leave) | {:.0} % | | |",
        t.machine
    );
    println!(
        "| 2 against two loops at once (what the loop's own parallel parts leave) | {:.0} % (each round's own: {} %) | | |",
        t.loop_own,
        m.paired
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "{}",
        two_loops_line(&shares, train_target(KernelPath::active()))
    );
    Ok(())
}

/// `n` rounds of the thread rows ([`scaling`]): one loop on 1 thread, one on 2, and two loops
/// of 1 thread at once, each first in turn.
fn thread_rounds(
    mnist: &under8k_mnist_data::Mnist,
    batches: usize,
    n: usize,
) -> Result<Vec<ThreadRound>> {
    let on = |threads: usize, tag: &str| -> Result<Figures> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?
            .install(|| measure_in(mnist, Kernels::Fast, batches, 10_000, tag))
    };
    // Training only: the two loops' evaluations need not overlap (one may still train).
    let two_loops = || -> Result<f64> {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| on(1, "-a"));
            let b = on(1, "-b");
            (a.join().expect("a bench loop does not panic"), b)
        });
        Ok(a?.train + b?.train)
    };
    let mut rounds = vec![];
    for r in 0..n {
        let (mut one, mut two, mut both) = (None, None, None);
        for k in round_order(3, r) {
            match k {
                0 => one = Some(on(1, "")?),
                1 => two = Some(on(2, "")?),
                _ => both = Some(two_loops()?),
            }
        }
        let (Some(one), Some(two), Some(both)) = (one, two, both) else {
            unreachable!("each round measures all three")
        };
        rounds.push(ThreadRound { one, two, both });
    }
    Ok(rounds)
}

/// The most rounds of the thread rows ([`scaling`]; fewer with fewer `--rounds`): with a single
/// reading of each, three runs in a row put 2 threads at 90, 78 and 75 % of two loops at once.
const THREAD_ROUNDS: usize = 3;

/// One round of the thread rows: one loop on 1 thread, one on 2, and two loops of 1 thread at
/// once (their training rates summed).
struct ThreadRound {
    one: Figures,
    two: Figures,
    both: f64,
}

/// The thread rows over their rounds: the median of each rate, and each round's 2-thread
/// training rate against its own two loops at once, in percent (`paired`: the two measured
/// within a minute of each other).
struct ThreadMedians {
    one: Figures,
    two: Figures,
    both: f64,
    paired: Vec<f64>,
}

impl ThreadMedians {
    fn of(rounds: &[ThreadRound]) -> Self {
        let of = |f: fn(&ThreadRound) -> f64| median(rounds.iter().map(f).collect());
        ThreadMedians {
            one: Figures {
                train: of(|r| r.one.train),
                eval: of(|r| r.one.eval),
            },
            two: Figures {
                train: of(|r| r.two.train),
                eval: of(|r| r.two.eval),
            },
            both: of(|r| r.both),
            paired: rounds
                .iter()
                .map(|r| 100.0 * r.two.train / r.both)
                .collect(),
        }
    }
}

/// The peak the thread rows are set against, in FLOP/s: of the two measured around them, the
/// higher, for the rows' kernel `path`, by the rounds' own rule ([`around_each`]).
fn rows_peak(around: [Peaks; 2], path: KernelPath) -> f64 {
    around_each(&around)[0].of(path)
}

/// What the two loops at once say about the training target `want` (in percent): what 2
/// threads would reach with nothing lost between them, and how much faster each core's work
/// must be. Where the 2-thread loop read more than the two loops, nothing was lost between its
/// threads, and the factor is counted from its share instead, the higher of the two.
fn two_loops_line(shares: &ThreadShares, want: f64) -> String {
    let (best, lost, from) = match shares.two > shares.both {
        true => (
            shares.two,
            format!(
                "the 2 threads read more ({:.1} %): nothing lost between them",
                shares.two
            ),
            "the 2 threads' share, the higher",
        ),
        false => (
            shares.both,
            "what 2 threads reach with nothing lost between them".to_string(),
            "that",
        ),
    };
    let beyond = match best >= want {
        true => format!("at or above the training target's {want:.0} %"),
        false => format!(
            "the training target's {want:.0} % needs each core's work {:.2}× as fast as {from}",
            want / best
        ),
    };
    format!(
        "two loops of 1 thread at once, each core on its own work, read {:.1} % of the peak: {lost} ({beyond})",
        shares.both
    )
}

/// The thread rows' training rates as shares of the peak, in percent, for `work` FLOP per
/// image: one loop on 1 thread against one core's part of the peak (`peak` FLOP/s over the
/// `threads` its loop ran on), one loop on 2 threads and two loops of 1 at once (their sum)
/// against the whole peak. The last is what the cores reach when each runs its own loop: the
/// 2-thread loop can reach it only by losing nothing between its threads, and beyond it only by
/// each core's work running faster.
struct ThreadShares {
    one: f64,
    two: f64,
    both: f64,
}

impl ThreadShares {
    fn of(work: f64, peak: f64, threads: usize, [one, two, both]: [f64; 3]) -> Self {
        ThreadShares {
            one: share(work, one, peak / threads.max(1) as f64),
            two: share(work, two, peak),
            both: share(work, both, peak),
        }
    }
}

/// The performance issue's training target for a kernel path, in percent of peak: ≥ 50 % with
/// AVX-512, ≥ 40 % on AVX2-only machines.
fn train_target(path: KernelPath) -> f64 {
    if path == KernelPath::Avx512 {
        50.0
    } else {
        40.0
    }
}

/// The thread row's shares, in percent, from the training rates of one loop on 1 thread, one
/// on 2, and two loops of 1 thread at once (their sum): the efficiency of 2 threads is the
/// product of what the machine's shared parts leave (`machine`) and what the loop's own
/// parallel parts leave (`loop_own`).
struct Scaling {
    efficiency: f64,
    machine: f64,
    loop_own: f64,
}

impl Scaling {
    fn of(one: f64, two: f64, both: f64) -> Self {
        Scaling {
            efficiency: efficiency(one, two),
            machine: efficiency(one, both),
            loop_own: 100.0 * two / both,
        }
    }
}

/// What a rate on two cores makes of twice the rate on one, in percent.
fn efficiency(one: f64, two: f64) -> f64 {
    100.0 * two / (2.0 * one)
}

/// One numerics version against another on the training step ([`train_step`]) of each path:
/// the bench runs it for the engine's ([`under8k_model::NUMERICS_VERSION`]) against the version
/// before ([`under8k_model::PREVIOUS_NUMERICS`]), what that change gained, and for the change
/// before that (while it is no older than [`under8k_model::OLDEST_NUMERICS`]). Alternating
/// rounds of `batches` steps and the median of the paired ratios.
fn against(fast: &[PathFigures], batches: usize, [old, new]: [u32; 2], title: &str) -> Result<()> {
    println!("\n{title} (version {new}) against version {old}:");
    let default_path = KernelPath::active();
    for f in fast {
        KernelPath::use_path(f.path)?;
        let mut nets = vec![];
        for v in [old, new] {
            let (net, x, y) = seed_net(v)?;
            let opt = Sgd::new(net.named_params(), SgdConfig::momentum(0.01, 0.9))?;
            nets.push((net, opt, x, y));
        }
        let (r, lo, hi) = alternating(|| {
            let mut ms = [0.0; 2];
            for (m, (net, opt, x, y)) in ms.iter_mut().zip(&mut nets) {
                train_step(net, opt, x, y)?;
                let t = Instant::now();
                for _ in 0..batches {
                    train_step(net, opt, x, y)?;
                }
                *m = t.elapsed().as_secs_f64();
            }
            Ok(ms)
        })?;
        println!(
            "- {} kernels: the step {r:.3}× as fast (median of 5 alternating rounds, {lo:.2}–{hi:.2})",
            f.path
        );
    }
    KernelPath::use_path(default_path)?;
    Ok(())
}

/// 5 rounds of `pair` (the old and the new version's times, one after the other): the median
/// of old/new and its range.
fn alternating(mut pair: impl FnMut() -> Result<[f64; 2]>) -> Result<(f64, f64, f64)> {
    let mut ratios = vec![];
    for _ in 0..5 {
        let [old, new] = pair()?;
        ratios.push(old / new);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
    Ok((median(ratios), lo, hi))
}

/// The engine's numerics ([`under8k_model::NUMERICS_VERSION`]) against the version before on
/// evaluation (`Net::infer` of 2,000 images), per kernel path: alternating rounds of 10
/// batches and the median of the paired ratios.
fn eval_against(fast: &[PathFigures]) -> Result<()> {
    let (old, now) = (
        under8k_model::PREVIOUS_NUMERICS,
        under8k_model::NUMERICS_VERSION,
    );
    println!("\nthe numerics (version {now}) against version {old} on evaluation:");
    let default_path = KernelPath::active();
    let x = pattern_images(2000)?;
    for f in fast {
        KernelPath::use_path(f.path)?;
        let nets = [seed_net(old)?.0, seed_net(now)?.0];
        let (r, lo, hi) = alternating(|| {
            let mut s = [0.0; 2];
            for (s, net) in s.iter_mut().zip(&nets) {
                net.infer(&x)?;
                let t = Instant::now();
                for _ in 0..10 {
                    net.infer(&x)?;
                }
                *s = t.elapsed().as_secs_f64();
            }
            Ok(s)
        })?;
        println!(
            "- {} kernels: evaluation {r:.3}× as fast (median of 5 alternating rounds, {lo:.2}–{hi:.2})",
            f.path
        );
    }
    KernelPath::use_path(default_path)?;
    Ok(())
}

/// One line per target of the performance issue for one kernel path, against `peak` (the AVX2
/// kernels against the AVX2 loop's peak: what they can reach on this core, as on an AVX2-only
/// machine); the loop around the engine for the default path. End to end and peak memory are
/// whole-process figures ([`end_to_end`], with `--pairs`).
fn targets(f: &PathFigures, work: &Work, default: bool) {
    let path = f.path;
    // Training: `train_target`; evaluation ≥ 60 %.
    let want = train_target(path);
    let (train, eval) = (f.shares.train, f.shares.eval);
    let (trains, evals) = (move |v: f64| v >= want, |v: f64| v >= 60.0);
    println!(
        "\ntargets ({path} kernels, against each round's peak; median {:.1} GFLOP/s):",
        f.peak / 1e9
    );
    let train_rounds: Vec<f64> = f.each.iter().map(|r| r.train).collect();
    let eval_rounds: Vec<f64> = f.each.iter().map(|r| r.eval).collect();
    println!(
        "- training: {} % of peak, effective (the direct kernels' FLOPs; target ≥ {want:.0} %): {}; {}",
        shown(train, trains),
        met(trains(train)),
        by_round(&train_rounds, trains)
    );
    println!(
        "- evaluation: {} % of peak (target ≥ 60 %): {}; {}",
        shown(eval, evals),
        met(evals(eval)),
        by_round(&eval_rounds, evals)
    );
    if !default {
        return;
    }
    let around = median(work.around.clone());
    let small = |v: f64| v <= 5.0;
    println!(
        "- the loop around the engine: {} % of a step, the median of {} loops (target ≤ 5 %): {}; {}",
        shown(around, small),
        work.around.len(),
        met(small(around)),
        by_loop(&work.around, small)
    );
}

/// A target's verdict.
fn met(reached: bool) -> &'static str {
    if reached { "met" } else { "not met" }
}

/// `v` with one decimal, or with as many more (up to four) as it takes for the text to fall on
/// the same side of its target as `v` does (`reaches`): 49.96 shows as 49.96, not as a 50.0
/// that reads as reaching 50.
fn shown(v: f64, reaches: impl Fn(f64) -> bool) -> String {
    (1..=4)
        .map(|d| format!("{v:.d$}"))
        .find(|t| t.parse::<f64>().is_ok_and(|s| reaches(s) == reaches(v)))
        .unwrap_or_else(|| v.to_string())
}

/// A target's share in each round, in the order measured, and in how many rounds it reached
/// its target (`reaches`): the verdict is the median's, and this says how near the noise puts
/// it.
fn by_round(shares: &[f64], reaches: impl Fn(f64) -> bool + Copy) -> String {
    each_of("rounds", shares, reaches)
}

/// [`by_round`] for the loops of [`per_layer`].
fn by_loop(shares: &[f64], reaches: impl Fn(f64) -> bool + Copy) -> String {
    each_of("loops", shares, reaches)
}

fn each_of(what: &str, shares: &[f64], reaches: impl Fn(f64) -> bool + Copy) -> String {
    let each: Vec<String> = shares.iter().map(|&v| shown(v, reaches)).collect();
    let reached = shares.iter().filter(|&&v| reaches(v)).count();
    format!(
        "{what} {} %, reached in {reached} of {}",
        each.join(" / "),
        shares.len()
    )
}

pub fn run(args: &Args) -> Result<()> {
    let threads = rayon::current_num_threads();
    let with_torch = with_torch(args);
    // Built before any measurement, so that a failed build does not cost the bench's minutes.
    let cli = if args.pairs > 0 && with_torch {
        Some(crate::endtoend::build_cli()?)
    } else {
        None
    };
    println!(
        "machine: {}, {threads} threads",
        under8k_train::experiments::cpu_description()
    );
    let peaks = crate::peak::measure_each(0.5);
    for line in peak_lines(&peaks) {
        println!("{line}");
    }
    // The first reading, which the reference and PyTorch rows are set against.
    let first_peak = Peaks::of_loops(&peaks).best;
    let prepared = under8k_cli::data::load(
        &under8k_cli::data::DataArgs {
            dataset: None,
            dir: Some(args.data.clone()),
        },
        None,
    )?;
    let mnist = &prepared.data;
    let default_path = KernelPath::active();
    let mut paths: Vec<KernelPath> = KernelPath::available()
        .into_iter()
        .filter(|&p| p != KernelPath::Portable && p != default_path)
        .collect();
    paths.insert(0, default_path);
    // Each round: the peak again, then every path's figures, each path first in turn (right
    // after the peak loop the machine is in another state than after a training run: no path
    // should always have the same place).
    let mut rounds: Vec<Vec<Figures>> = paths.iter().map(|_| vec![]).collect();
    let (mut round_peaks, mut machine, mut trips) = (vec![], vec![], vec![]);
    for r in 0..args.rounds.max(1) {
        round_peaks.push(Peaks::measure(0.25));
        trips.push(cores::round_trip(TRIP_TIME));
        for i in round_order(paths.len(), r) {
            KernelPath::use_path(paths[i])?;
            let before = CpuTimes::now();
            rounds[i].push(measure(mnist, Kernels::Fast, args.batches, 10_000)?);
            if i == 0 {
                machine.push(before.zip(CpuTimes::now()).and_then(|(a, b)| a.until(b)));
            }
        }
    }
    round_peaks.push(Peaks::measure(0.25));
    trips.push(cores::round_trip(TRIP_TIME));
    let peaks = around_each(&round_peaks);
    let rounds: Vec<Vec<(Figures, f64)>> = paths
        .iter()
        .zip(rounds)
        .map(|(&p, r)| r.into_iter().zip(peaks.iter().map(|pk| pk.of(p))).collect())
        .collect();
    KernelPath::use_path(default_path)?;
    let reference = measure(mnist, Kernels::Reference, 3, 1_000)?;
    let torch = torch(args, threads, with_torch);
    let work = per_layer(30, args.rounds)?;
    let fast: Vec<PathFigures> = paths
        .iter()
        .zip(&rounds)
        .map(|(&p, r)| path_figures(p, r, &work))
        .collect();
    let (lo, hi) = round_peaks.iter().fold((f64::MAX, 0.0f64), |(l, h), v| {
        (l.min(v.best), h.max(v.best))
    });
    println!(
        "peak measured again before each round and after the last: {:.1}–{:.1} GFLOP/s",
        lo / 1e9,
        hi / 1e9
    );
    println!(
        "the cores' round trip (a cache line between two threads and back) before each round and after the last: {}",
        cores::line(&trips)
    );
    println!(
        "(where a virtual machine's two cores lie on two dies it reads several times what it does on one, and a step slows by up to a quarter: docs/PERFORMANCE.md)"
    );
    println!(
        "\nTraining: the real loop with attempt 3's config (rotation ±7°, dropout, BatchNorm in training mode,"
    );
    println!(
        "momentum SGD); the reference path trains 3 batches and evaluates 1,000 images. % of peak: the"
    );
    println!(
        "convolutions' {:.2} MFLOP per image trained and {:.2} per image evaluated, at the figure's rate,",
        work.train / 1e6,
        work.forward / 1e6
    );
    println!(
        "over the peak. Fast engine rows: the median of {} rounds, each round's share against the",
        args.rounds.max(1)
    );
    println!(
        "higher of the peaks measured just before and just after it, each path first in turn; the"
    );
    println!("reference and PyTorch rows against the first peak above.");
    println!(
        "\n| system | train img/s | s per 60k epoch | eval img/s | train % of peak | eval % of peak |"
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, f: &Figures, shares: &Figures| {
        println!(
            "| {name} | {:.0} | {:.1} | {:.0} | {:.1} % | {:.1} % |",
            f.train,
            60_000.0 / f.train,
            f.eval,
            shares.train,
            shares.eval
        )
    };
    for f in &fast {
        let default = if f.path == default_path {
            ", default"
        } else {
            ""
        };
        let name = format!("under8k fast engine ({} kernels{default})", f.path);
        row(&name, &f.rates, &f.shares);
    }
    row(
        "under8k reference (candle ops)",
        &reference,
        &reference.shares(&work, first_peak),
    );
    let best = &fast[0].rates;
    println!(
        "\nfast / reference: train {:.1}×, eval {:.1}×",
        best.train / reference.train,
        best.eval / reference.eval
    );
    let around = (work.step_ms - work.engine_ms).max(0.0);
    println!(
        "the loop around the engine (candle's graph and loss, optimizer, accuracy; the next batch is assembled beside the step on the same threads): {around:.2} of {:.2} ms per batch over {} loops of the table's; in each loop {} % of a step, the median {:.1} %",
        work.step_ms,
        work.around.len(),
        work.around
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(" / "),
        median(work.around.clone())
    );
    scaling(mnist, args.batches, &work, threads, args.rounds)?;
    for f in &fast {
        targets(f, &work, f.path == fast[0].path);
        if f.path == fast[0].path {
            println!(
                "- the cores' time in each of these rounds (/proc/stat): {}; a core the \
                 hypervisor stops (steal) stops its thread mid-layer, and the other then idles",
                steal::line(&machine)
            );
        }
    }
    let now = under8k_model::NUMERICS_VERSION;
    for (new, title) in (under8k_model::OLDEST_NUMERICS + 1..=now)
        .rev()
        .zip(["the numerics", "the change before"])
    {
        against(&fast, 20, [new - 1, new], title)?;
    }
    eval_against(&fast)?;
    match torch {
        Some(Ok((t, aug))) => {
            row(
                "PyTorch eager, step without augmentation",
                &t,
                &t.shares(&work, first_peak),
            );
            println!(
                "| PyTorch eager, with per-image torchvision rotation | {aug:.0} | {:.1} | | {:.1} % | |",
                60_000.0 / aug,
                share(work.train, aug, first_peak)
            );
            println!(
                "\nfast (with rotation) / PyTorch (without): train {:.2}×, eval {:.2}×; / PyTorch with rotation: train {:.2}×",
                best.train / t.train,
                best.eval / t.eval,
                best.train / aug
            );
        }
        Some(Err(e)) => println!("PyTorch: failed: {e:#}"),
        None => match args.no_torch {
            true => println!("PyTorch: skipped (--no-torch)"),
            false => println!("PyTorch: not importable by python3; skipped"),
        },
    }
    end_to_end(args, cli.as_deref(), &prepared, threads)
}

/// The end-to-end pairs with the binary `cli` (built with `--pairs` and PyTorch) and their two
/// target lines.
fn end_to_end(
    args: &Args,
    cli: Option<&std::path::Path>,
    data: &under8k_train::data::Prepared,
    threads: usize,
) -> Result<()> {
    let Some(cli) = cli else {
        println!(
            "end to end: not measured (needs --pairs N and python3 with torch; a 15-epoch pair takes minutes)"
        );
        return Ok(());
    };
    println!(
        "
end to end: {} alternating pairs of {}-epoch runs of attempt 3, {threads} threads each",
        args.pairs, args.pair_epochs
    );
    let pairs =
        crate::endtoend::pairs(cli, &args.data, data, args.pairs, args.pair_epochs, threads)?;
    let mut ratios: Vec<f64> = pairs.iter().map(|p| p.torch / p.ours).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    println!(
        "- end to end: median {ratio:.2}× PyTorch's time over {} pairs (target ≥ 5×): {}",
        pairs.len(),
        met(ratio >= 5.0)
    );
    match pairs.iter().filter_map(|p| p.rss_mib).reduce(f64::max) {
        Some(rss) => println!(
            "- peak resident set of our run: {rss:.0} MiB (target ≤ 200 MiB): {}",
            met(rss <= 200.0)
        ),
        None => println!("- peak resident set: not readable here (no /proc)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows' medians and each round's own 2-thread ratio, from three rounds worked by hand.
    #[test]
    fn thread_rows_are_medians_and_each_rounds_own_ratio() {
        let f = |train: f64, eval: f64| Figures { train, eval };
        let round = |one, two, both| ThreadRound { one, two, both };
        let rounds = [
            round(f(5_000.0, 40_000.0), f(9_000.0, 76_000.0), 10_000.0),
            round(f(6_000.0, 42_000.0), f(9_900.0, 80_000.0), 12_000.0),
            round(f(5_500.0, 41_000.0), f(8_000.0, 70_000.0), 10_000.0),
        ];
        let m = ThreadMedians::of(&rounds);
        // The middle of each column: 5,500 and 41,000; 9,000 and 76,000; 10,000.
        assert_eq!((m.one.train, m.one.eval), (5_500.0, 41_000.0));
        assert_eq!((m.two.train, m.two.eval), (9_000.0, 76_000.0));
        assert_eq!(m.both, 10_000.0);
        // Each round's 2 threads over its own two loops: 9,000 / 10,000, 9,900 / 12,000 and
        // 8,000 / 10,000. The medians' own ratio (90 %) is not the rounds' (82.5 %).
        assert_eq!(m.paired, vec![90.0, 82.5, 80.0]);
    }

    /// The factor counts from the higher of the two loops' and the 2 threads' shares, worked by
    /// hand: 50 / 30.8 = 1.623…, 50 / 30 = 1.666…
    #[test]
    fn two_loops_line_counts_from_the_higher_share() {
        let at = |two, both| ThreadShares {
            one: 0.0,
            two,
            both,
        };
        let line = two_loops_line(&at(30.8, 30.1), 50.0);
        assert!(line.contains("read 30.1 % of the peak: the 2 threads read more (30.8 %)"));
        assert!(
            line.contains("1.62× as fast as the 2 threads' share"),
            "{line}"
        );
        let line = two_loops_line(&at(28.0, 30.0), 50.0);
        assert!(line.contains("what 2 threads reach with nothing lost between them"));
        assert!(line.contains("1.67× as fast as that)"), "{line}");
        let line = two_loops_line(&at(40.0, 52.0), 50.0);
        assert!(
            line.contains("(at or above the training target's 50 %)"),
            "{line}"
        );
    }

    /// Each path goes first in turn, worked by hand.
    #[test]
    fn each_path_goes_first_in_turn() {
        // Two paths: 0 first, then 1, then 0; three: rotations 012, 120, 201.
        let orders = |n: usize, rounds: usize| -> Vec<Vec<usize>> {
            (0..rounds).map(|r| round_order(n, r).collect()).collect()
        };
        assert_eq!(orders(2, 3), [vec![0, 1], vec![1, 0], vec![0, 1]]);
        assert_eq!(orders(3, 3), [vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]]);
        assert_eq!(orders(1, 2), [vec![0], vec![0]]);
    }

    /// Three rounds: one at full speed, two with the machine at half speed (peak and rates
    /// halved together). Each round's share against its own peak is 20 %, 20 % and 24 %, so the
    /// median share is 20 %; the median rate over the median peak would read 24 % (6,000 img/s
    /// against 200 GFLOP/s), which is what this guards against.
    #[test]
    fn shares_are_each_rounds_rate_against_its_own_peak() {
        let work = Work {
            train: 8e6,
            forward: 3e6,
            engine_ms: 0.0,
            step_ms: 0.0,
            around: vec![],
        };
        let round = |train: f64, eval: f64, peak: f64| (Figures { train, eval }, peak);
        // Train: 8e6 FLOP · 10,000 img/s / 400e9 = 20 %, 8e6 · 5,000 / 200e9 = 20 %,
        // 8e6 · 6,000 / 200e9 = 24 %. Eval: 3e6 · 40,000 / 400e9 = 3e6 · 20,000 / 200e9 = 30 %.
        let rounds = [
            round(10_000.0, 40_000.0, 400e9),
            round(5_000.0, 20_000.0, 200e9),
            round(6_000.0, 20_000.0, 200e9),
        ];
        let f = path_figures(KernelPath::Avx512, &rounds, &work);
        assert_eq!((f.rates.train, f.rates.eval), (6_000.0, 20_000.0));
        assert_eq!(f.peak, 200e9);
        assert!((f.shares.train - 20.0).abs() < 1e-9, "{}", f.shares.train);
        assert!((f.shares.eval - 30.0).abs() < 1e-9, "{}", f.shares.eval);
        // Each round's own shares, in the order measured (worked out above).
        let each: Vec<(f64, f64)> = f.each.iter().map(|r| (r.train, r.eval)).collect();
        assert_eq!(each.len(), 3, "{each:?}");
        for (got, want) in each.iter().zip([(20.0, 30.0), (20.0, 30.0), (24.0, 30.0)]) {
            assert!(
                (got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9,
                "{each:?}"
            );
        }
    }

    /// The loop around the engine, by hand: 10 ms of steps with 9.5 ms in the engine leave
    /// 0.5 ms, 5 % of a step; an engine timed longer than its loop (its own clock reads around
    /// each layer) leaves nothing, never a negative share. The loops' line counts those at or
    /// under 5 % in the order measured.
    #[test]
    fn the_loop_around_the_engine_is_a_share_per_loop_never_negative() {
        assert!((around_share(0.010, 0.0095) - 5.0).abs() < 1e-9);
        assert_eq!(around_share(0.010, 0.0102), 0.0);
        assert_eq!(
            by_loop(&[3.1, 15.9, 2.97], |v| v <= 5.0),
            "loops 3.1 / 15.9 / 3.0 %, reached in 2 of 3"
        );
    }

    /// The rounds as measured, and how many reached the target: 49.9 misses 50, 50.0 reaches
    /// it (the verdict's own `>=`).
    #[test]
    fn by_round_counts_the_rounds_that_reach_the_target() {
        assert_eq!(
            by_round(&[41.04, 50.0, 49.9], |v| v >= 50.0),
            "rounds 41.0 / 50.0 / 49.9 %, reached in 1 of 3"
        );
        assert_eq!(
            by_round(&[61.0], |v| v >= 60.0),
            "rounds 61.0 %, reached in 1 of 1"
        );
        // 49.96 rounds to 50.0 at one decimal and does not reach 50: it shows two.
        assert_eq!(
            by_round(&[49.96, 50.04], |v| v >= 50.0),
            "rounds 49.96 / 50.0 %, reached in 1 of 2"
        );
    }

    /// One decimal where it tells the side of the target; more where it would not: 49.96 and
    /// 49.996 against ≥ 50, 5.04 against ≤ 5 (one decimal would show 50.0, 50.0 and 5.0).
    #[test]
    fn a_share_is_never_shown_on_the_wrong_side_of_its_target() {
        let at_least_50 = |v: f64| v >= 50.0;
        assert_eq!(shown(49.94, at_least_50), "49.9");
        assert_eq!(shown(49.96, at_least_50), "49.96");
        assert_eq!(shown(49.996, at_least_50), "49.996");
        assert_eq!(shown(50.0, at_least_50), "50.0");
        assert_eq!(shown(5.04, |v| v <= 5.0), "5.04");
        assert_eq!(shown(4.96, |v| v <= 5.0), "5.0");
    }

    /// 1 thread 5,000 img/s, 2 threads 9,000, two loops of 1 at once 9,500 together: 2
    /// threads give 9,000 / 10,000 = 90 %, the two loops 9,500 / 10,000 = 95 %, and 2 threads
    /// against the two loops 9,000 / 9,500 = 94.74 %; 95 % × 94.74 % = 90 %.
    #[test]
    fn the_thread_row_splits_the_efficiency_into_machine_and_loop() {
        let s = Scaling::of(5_000.0, 9_000.0, 9_500.0);
        assert!((s.efficiency - 90.0).abs() < 1e-9, "{}", s.efficiency);
        assert!((s.machine - 95.0).abs() < 1e-9, "{}", s.machine);
        assert!((s.loop_own - 94.736_842_105).abs() < 1e-6, "{}", s.loop_own);
        assert!((s.machine * s.loop_own / 100.0 - s.efficiency).abs() < 1e-9);
    }

    /// 8.52 MFLOP per image against a 600 GFLOP/s peak on 2 threads: 1 thread at 15,000
    /// img/s makes 127.8 GFLOP/s of one core's 300, 42.6 %; 2 threads at 27,000 make 230.04 of
    /// 600, 38.34 %; two loops at once at 28,000 make 238.56 of 600, 39.76 %. At 39.76 % the
    /// target of 50 % needs 50 / 39.76 = 1.2575× (by hand).
    #[test]
    fn the_thread_rows_shares_count_one_thread_against_one_core() {
        let s = ThreadShares::of(8.52e6, 600e9, 2, [15_000.0, 27_000.0, 28_000.0]);
        assert!((s.one - 42.6).abs() < 1e-9, "{}", s.one);
        assert!((s.two - 38.34).abs() < 1e-9, "{}", s.two);
        assert!((s.both - 39.76).abs() < 1e-9, "{}", s.both);
        assert!((train_target(KernelPath::Avx512) / s.both - 1.2575).abs() < 1e-4);
        assert_eq!(train_target(KernelPath::Avx2), 40.0);
    }

    #[test]
    fn the_avx2_kernels_are_measured_against_the_avx2_loop() {
        let peaks = Peaks {
            best: 400e9,
            avx2: Some(200e9),
        };
        assert_eq!(peaks.of(KernelPath::Avx2), 200e9);
        assert_eq!(peaks.of(KernelPath::Avx512), 400e9);
        // From the loops: the AVX2 loop's peak kept only when lower than the widest one's.
        let lp = |isa, flops| crate::peak::Peak {
            flops,
            isa,
            threads: 2,
        };
        let both = Peaks::of_loops(&[lp("AVX2 FMA", 150e9), lp("AVX-512 FMA", 300e9)]);
        assert_eq!((both.best, both.avx2), (300e9, Some(150e9)));
        let avx2_only = Peaks::of_loops(&[lp("AVX2 FMA", 150e9)]);
        assert_eq!((avx2_only.best, avx2_only.avx2), (150e9, None));
        let only = Peaks {
            best: 150e9,
            avx2: None,
        };
        assert_eq!(only.of(KernelPath::Avx2), 150e9);
    }

    /// Where the AVX2 loop reads higher (a Zen 4: 230.7 against 229.9), the first line names it
    /// and the AVX-512 loop's reading follows; where it reads lower, the reverse. Figures by
    /// hand: 230.7e9 FLOP/s is 230.7 GFLOP/s.
    #[test]
    fn the_peak_lines_show_every_loop_whichever_reads_higher() {
        let lp = |isa, flops| crate::peak::Peak {
            flops,
            isa,
            threads: 2,
        };
        let zen4 = peak_lines(&[lp("AVX2 FMA", 230.7e9), lp("AVX-512 FMA", 229.9e9)]);
        assert_eq!(
            zen4,
            [
                "peak: 230.7 GFLOP/s FP32 (AVX2 FMA loop, register-resident, on 2 threads at once)",
                "       229.9 GFLOP/s with the AVX-512 FMA loop",
            ]
        );
        let xeon = peak_lines(&[lp("AVX2 FMA", 150.0e9), lp("AVX-512 FMA", 300.0e9)]);
        assert!(xeon[0].starts_with("peak: 300.0 GFLOP/s FP32 (AVX-512 FMA loop"));
        assert_eq!(xeon[1], "       150.0 GFLOP/s with the AVX2 FMA loop");
        assert_eq!(xeon.len(), 2);
        assert_eq!(peak_lines(&[lp("scalar mul_add", 20.0e9)]).len(), 1);
    }

    /// The thread rows' peak: 280 before and 310 after them, 310 by hand; on the AVX2 path, the
    /// AVX2 loop's higher reading, 160.
    #[test]
    fn the_thread_rows_take_the_higher_peak_around_them() {
        let around = [
            Peaks::new(280e9, Some(160e9)),
            Peaks::new(310e9, Some(150e9)),
        ];
        assert_eq!(rows_peak(around, KernelPath::Avx512), 310e9);
        assert_eq!(rows_peak(around, KernelPath::Avx2), 160e9);
    }

    #[test]
    fn each_round_takes_the_higher_peak_around_it() {
        let pk = |best, avx2| Peaks { best, avx2 };
        // Measured before rounds 1 and 2 and after round 2. The third measurement's AVX2 loop
        // ran as fast as the widest (so no separate AVX2 peak): 310 for both.
        let measured = [
            pk(300e9, Some(150e9)),
            pk(280e9, Some(160e9)),
            pk(310e9, None),
        ];
        let got: Vec<(f64, Option<f64>)> = around_each(&measured)
            .iter()
            .map(|p| (p.best, p.avx2))
            .collect();
        // Round 1: max(300, 280) and max(150, 160); round 2: max(280, 310) and max(160, 310),
        // which is no lower than the widest loop's 310, so the AVX2 kernels take 310 too.
        assert_eq!(got, [(300e9, Some(160e9)), (310e9, None)]);
        assert_eq!(around_each(&measured)[1].of(KernelPath::Avx2), 310e9);
    }
}
