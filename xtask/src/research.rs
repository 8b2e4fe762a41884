//! `cargo xtask research --out DIR`: a research goal's report. `DIR/goal.json` states the goal
//! (a parameter budget and an accuracy to hold over the last three epochs, by a rule over
//! seeds); `DIR/candidates/*.json` are the recipes tried, each a full training config with a
//! validation split. Every candidate is trained (or verified, like `reproduce`) on the training
//! set less its validation split; the one whose validation accuracy holds highest over its last
//! three epochs is chosen, then trained on the whole training set with seeds 1..N and tested.
//! The test set is read only by those final runs. The report (`README.md`, `spec.json`,
//! `summary.txt`, `curves.png`, `research.json`) comes from the saved runs alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use under8k_mnist_data::Dataset;
use under8k_model::Summary;
use under8k_model::checkpoint::write_atomic;
use under8k_model::summary::group;
use under8k_sched::Schedule;
use under8k_train::{DataChoice, TrainConfig};

use crate::reproduce::{Job, Mode, run_job};
use crate::runs::{
    Run, TorchRun, Verified, cpu_description, last3, load_run_in, max, mean_sd, min_last3,
};
use crate::verify::{refuse_differences, verification};

/// `cargo xtask research` options.
#[derive(clap::Args)]
pub struct Args {
    /// The report directory: it holds `goal.json` and `candidates/*.json`.
    #[arg(long)]
    out: PathBuf,
    /// Seeds of the chosen recipe (1, 2, …, N).
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Keep complete runs as they are instead of retraining them to verify them.
    #[arg(long)]
    skip_existing: bool,
    /// When a retrained run differs from the committed one, replace it instead of failing.
    #[arg(long, conflicts_with = "skip_existing")]
    accept: bool,
    /// MNIST's directory (default `data/mnist`; missing files are fetched).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// What the report aims at (`goal.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// A heading.
    pub title: String,
    /// Most parameters a net may have.
    pub max_params: usize,
    /// The test accuracy (%) to hold in each of the last three epochs.
    pub target: f64,
    /// How many of the seeds must hold it: `median` (the median seed's lowest of the last three
    /// is at least the target) or a count.
    pub rule: Rule,
    /// Most epochs and largest batch a recipe may use.
    pub max_epochs: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// Why the candidates are what they are, round by round (shown above the search log).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How the seeds are judged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The median seed holds the target.
    Median,
    /// At least this many seeds hold it.
    AtLeast(usize),
}

/// How the report was made (`research.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    command: String,
    seeds: u64,
    chosen: String,
    cpu: String,
    threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified: Option<Verified>,
}

/// A candidate: its name (the file's stem) and config.
struct Candidate {
    name: String,
    config: TrainConfig,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not what was expected", path.display()))
}

fn candidates(out: &Path, goal: &Goal) -> Result<Vec<Candidate>> {
    let dir = out.join("candidates");
    let mut list = vec![];
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("{}: cannot read", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let config: TrainConfig = read_json(&path)?;
        config.validate()?;
        let params = Summary::of(&config.arch)?.totals.total_params;
        let why = if config.validation.is_none() {
            Some("has no validation split: recipes are chosen on one".to_string())
        } else if params > goal.max_params {
            Some(format!("has {params} parameters, over {}", goal.max_params))
        } else if config.epochs > goal.max_epochs || config.batch_size > goal.max_batch {
            Some(format!(
                "trains {} epochs in batches of {}, beyond {} and {}",
                config.epochs, config.batch_size, goal.max_epochs, goal.max_batch
            ))
        } else {
            None
        };
        if let Some(why) = why {
            bail!("{}: {why}", path.display());
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a candidate's file name")?
            .to_string();
        list.push(Candidate { name, config });
    }
    if list.is_empty() {
        bail!("{}: no candidates (*.json)", dir.display());
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

/// The chosen recipe on the whole training set, tested: no validation split, its one-cycle
/// schedule stretched over the longer epochs.
fn final_config(c: &TrainConfig, seed: u64) -> TrainConfig {
    let mut c = c.clone();
    c.validation = None;
    c.seed = seed;
    c.fit_schedule(under8k_train::config::MNIST_TRAIN_IMAGES);
    c
}

fn search_dir(out: &Path, name: &str) -> PathBuf {
    out.join("search").join(name)
}

fn final_dir(out: &Path, seed: u64) -> PathBuf {
    out.join("runs").join(format!("seed{seed}"))
}

/// The candidate whose validation accuracy holds highest over its last three epochs (ties: the
/// higher best epoch, then the first name).
fn choose<'a>(searched: &'a [(&Candidate, Run)]) -> &'a (&'a Candidate, Run) {
    searched
        .iter()
        .max_by(|a, b| {
            a.1.min_last3()
                .total_cmp(&b.1.min_last3())
                .then(a.1.max_test().total_cmp(&b.1.max_test()))
                .then(b.0.name.cmp(&a.0.name))
        })
        .expect("at least one candidate")
}

/// The chosen recipe's final config of `seed`, as `research.json` in `out` records it (for
/// `cargo xtask pytorch`).
pub fn chosen_config(out: &Path, seed: u64) -> Result<TrainConfig> {
    let goal: Goal = read_json(&out.join("goal.json"))?;
    let m: Manifest = read_json(&out.join("research.json")).with_context(|| {
        format!(
            "{}: run `cargo xtask research --out {}` first",
            out.display(),
            out.display()
        )
    })?;
    let c = candidates(out, &goal)?
        .into_iter()
        .find(|c| c.name == m.chosen)
        .with_context(|| format!("{}: no candidate {}", out.display(), m.chosen))?;
    Ok(final_config(&c.config, seed))
}

pub fn run(args: &Args) -> Result<()> {
    let start = std::time::Instant::now();
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let goal: Goal = read_json(&args.out.join("goal.json"))?;
    let candidates = candidates(&args.out, &goal)?;
    let mode = match (args.skip_existing, args.accept) {
        (true, _) => Mode::SkipExisting,
        (_, accept) => Mode::Verify { accept },
    };
    let choice = DataChoice::Known(Dataset::Mnist);
    let data = crate::reproduce::load(
        choice,
        &crate::reproduce::data_dir(choice, args.data.as_deref()),
    )?;
    let stop = AtomicBool::new(false);
    let mut outcomes = vec![];
    for c in &candidates {
        if c.config.data != data.record {
            bail!("candidate {}: trains on other data than MNIST", c.name);
        }
        let job = Job {
            label: format!("search {}", c.name),
            config: c.config.clone(),
            dir: search_dir(&args.out, &c.name),
        };
        outcomes.push((job.label.clone(), run_job(&job, &data, mode, &stop)?));
    }
    let searched: Vec<(&Candidate, Run)> = candidates
        .iter()
        .map(|c| {
            Ok((
                c,
                load_run_in(&search_dir(&args.out, &c.name), c.config.seed)?,
            ))
        })
        .collect::<Result<_>>()?;
    let (chosen, best) = choose(&searched);
    println!(
        "chosen on validation: {} (lowest of its last three epochs {:.2} %)",
        chosen.name,
        best.min_last3()
    );
    for seed in 1..=args.seeds {
        let job = Job {
            label: format!("{} seed {seed}", chosen.name),
            config: final_config(&chosen.config, seed),
            dir: final_dir(&args.out, seed),
        };
        outcomes.push((job.label.clone(), run_job(&job, &data, mode, &stop)?));
    }
    refuse_differences(&outcomes)?;
    let previous: Option<Manifest> = read_json(&args.out.join("research.json")).ok();
    let verified = verification(
        &outcomes,
        previous.and_then(|m| m.verified),
        start.elapsed().as_secs_f64() / 60.0,
    );
    let mut command = format!("cargo xtask research --out {}", args.out.display());
    if args.seeds != 5 {
        command += &format!(" --seeds {}", args.seeds);
    }
    let manifest = Manifest {
        command,
        seeds: args.seeds,
        chosen: chosen.name.clone(),
        cpu: cpu_description(),
        threads: rayon::current_num_threads(),
        verified,
    };
    write_atomic(
        &args.out.join("research.json"),
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
    )?;
    write(&args.out)?;
    println!("report written to {}", args.out.join("README.md").display());
    Ok(())
}

/// Whether the runs meet the goal, and the figure the rule reads.
fn judge(goal: &Goal, finals: &[Run]) -> (bool, String) {
    let mut lows: Vec<f64> = finals.iter().map(Run::min_last3).collect();
    lows.sort_by(f64::total_cmp);
    let held = lows.iter().filter(|&&v| v >= goal.target).count();
    match goal.rule {
        Rule::Median => {
            let median = lows[lows.len() / 2];
            (
                median >= goal.target,
                format!(
                    "the median seed's lowest of the last three epochs is **{median:.2} %** (target {:.2} %: {:+.2} points); {held} of {} seeds hold the target",
                    goal.target,
                    median - goal.target,
                    lows.len()
                ),
            )
        }
        Rule::AtLeast(n) => (
            held >= n,
            format!(
                "**{held} of {} seeds** hold ≥ {:.2} % in each of the last three epochs (needed: {n}); the lowest of the last three epochs per seed ranges {:.2}–{:.2} %",
                lows.len(),
                goal.target,
                lows[0],
                lows[lows.len() - 1]
            ),
        ),
    }
}

fn augmentation(c: &TrainConfig) -> String {
    let mut parts = vec![];
    if let Some(d) = c.rotation_degrees {
        parts.push(format!("rotation ±{d}°"));
    }
    if let Some(a) = &c.affine {
        let mut s = format!(
            "affine: shift ≤ {:.0} % of the side, scale {}–{}",
            a.translate * 100.0,
            a.scale.0,
            a.scale.1
        );
        if a.degrees > 0.0 {
            s += &format!(", turn ±{}°", a.degrees);
        }
        parts.push(s);
    }
    if let Some(e) = &c.erasing {
        parts.push(format!(
            "erasing p {} (area {}–{})",
            e.p, e.area.0, e.area.1
        ));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}

/// The net's dropout probabilities, e.g. `0.02` or `none`.
fn dropout(c: &TrainConfig) -> String {
    let mut ps: Vec<String> = vec![];
    for l in c.arch.blocks.iter().flat_map(|b| &b.layers) {
        if let under8k_model::Layer::Dropout { p } = l {
            let p = p.to_string();
            if !ps.contains(&p) {
                ps.push(p);
            }
        }
    }
    if ps.is_empty() {
        "none".into()
    } else {
        ps.join(", ")
    }
}

fn schedule(c: &TrainConfig) -> String {
    match &c.schedule {
        Schedule::OneCycle { max_lr, .. } => format!("one-cycle to {max_lr}"),
        Schedule::Constant { lr } => format!("constant {lr}"),
        s => format!("decaying from {}", s.lr(0, 0)),
    }
}

/// Writes the report of `out` from its saved runs.
pub fn write(out: &Path) -> Result<()> {
    let goal: Goal = read_json(&out.join("goal.json"))?;
    let m: Manifest = read_json(&out.join("research.json"))?;
    let candidates = candidates(out, &goal)?;
    let searched: Vec<(&Candidate, Run)> = candidates
        .iter()
        .map(|c| Ok((c, load_run_in(&search_dir(out, &c.name), c.config.seed)?)))
        .collect::<Result<_>>()?;
    let (chosen, _) = choose(&searched);
    let finals = (1..=m.seeds)
        .map(|s| load_run_in(&final_dir(out, s), s))
        .collect::<Result<Vec<_>>>()?;
    let c = &finals[0].config;
    let summary = Summary::of(&c.arch)?;
    write_atomic(&out.join("spec.json"), (c.arch.to_json() + "\n").as_bytes())?;
    write_atomic(&out.join("summary.txt"), summary.to_table().as_bytes())?;
    crate::plot::curves_titled(
        &out.join("curves.png"),
        &format!(
            "{} ({} params)",
            chosen.name,
            group(summary.totals.total_params)
        ),
        under8k_train::plots::COLORS[2],
        &finals,
    )?;
    let torch = (1..)
        .map(|s| crate::runs::result_path_research(out, s))
        .take_while(|p| p.exists())
        .map(|p| read_json::<TorchRun>(&p))
        .collect::<Result<Vec<_>>>()?;
    let (met, figure) = judge(&goal, &finals);
    let mut s = String::new();
    writeln!(s, "# {}\n", goal.title)?;
    writeln!(
        s,
        "Generated by `{}` — do not edit by hand; `{} --skip-existing` rewrites it from the saved runs.\n",
        m.command, m.command
    )?;
    writeln!(
        s,
        "**Goal:** at most {} parameters, at most {} epochs, batches of at most {}, MNIST's standard 60k/10k split; ≥ {:.2} % test accuracy in each of the last three epochs, {}. Recipes are chosen on a validation split held out of the training set; the test set is read only by the final runs.\n",
        group(goal.max_params),
        goal.max_epochs,
        goal.max_batch,
        goal.target,
        match goal.rule {
            Rule::Median => format!("for the median of {} seeds", finals.len()),
            Rule::AtLeast(n) => format!("in at least {n} of {} seeds", finals.len()),
        }
    )?;
    writeln!(
        s,
        "**Outcome: {}.** `{}` ({} parameters): {figure}.\n",
        if met { "met" } else { "not met" },
        chosen.name,
        group(summary.totals.total_params)
    )?;
    match &m.verified {
        Some(v) if v.all() => writeln!(
            s,
            "Verified bit for bit on {} ({}, {} threads): every run retrained identical to the committed one ({} runs, {} epochs).\n",
            v.date, v.cpu, v.threads, v.runs, v.epochs
        )?,
        Some(v) => writeln!(
            s,
            "Partly verified on {} ({}, {} threads): {} of the {} runs retrained identical to the committed ones ({}); the others were trained by that command, and running it again verifies them.\n",
            v.date,
            v.cpu,
            v.threads,
            v.of.len(),
            v.total,
            v.of.join(", ")
        )?,
        None => writeln!(
            s,
            "Trained on {} ({} threads); running `{}` again retrains every run and checks it is bit-identical.\n",
            m.cpu, m.threads, m.command
        )?,
    }
    writeln!(s, "## The chosen recipe on the test set\n")?;
    writeln!(
        s,
        "| seed | max test acc | last three epochs | lowest of the last three | ≥ {:.2} % held |",
        goal.target
    )?;
    writeln!(s, "|---|---|---|---|---|")?;
    for r in &finals {
        let l3: Vec<String> = r.last3().iter().map(|v| format!("{v:.2}")).collect();
        writeln!(
            s,
            "| {} | {:.2} | {} | {:.2} | {} |",
            r.seed,
            r.max_test(),
            l3.join(" / "),
            r.min_last3(),
            if r.min_last3() >= goal.target {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    let ms = |f: fn(&Run) -> f64| {
        let (m, sd) = mean_sd(&finals.iter().map(f).collect::<Vec<_>>());
        format!("{m:.2} ± {sd:.2}")
    };
    writeln!(
        s,
        "| **mean ± sd** | {} | | {} | {} of {} |\n",
        ms(Run::max_test),
        ms(Run::min_last3),
        finals
            .iter()
            .filter(|r| r.min_last3() >= goal.target)
            .count(),
        finals.len()
    )?;
    writeln!(s, "![curves of the chosen recipe](curves.png)\n")?;
    writeln!(
        s,
        "Public anchors for this exercise, read from their repositories (one run each): 7,918 parameters, max 99.52 % but the epochs before it 99.44 / 99.41; 6,174 parameters, 99.42–99.48 % over its last 5 epochs; the seed write-up, 7,684 parameters, max 99.48 %, last three 99.34 / 99.40 / 99.42.\n"
    )?;
    writeln!(s, "### Recipe\n")?;
    writeln!(
        s,
        "`candidates/{}.json` without its validation split: {} epochs, batch {}, SGD momentum {}{}, weight decay {}, {} per batch; augmentation: {}; dropout as in the spec. The net (`spec.json`; `under8k summary --arch spec.json`, in `summary.txt`):\n",
        chosen.name,
        c.epochs,
        c.batch_size,
        c.momentum,
        match &c.schedule {
            Schedule::OneCycle {
                momentum: Some((lo, hi)),
                ..
            } => format!(" (cycled {lo}–{hi})"),
            _ => String::new(),
        },
        c.weight_decay,
        schedule(c),
        augmentation(c)
    )?;
    writeln!(s, "```text\n{}```\n", summary.to_table())?;
    writeln!(s, "## Search log: every recipe tried\n")?;
    writeln!(
        s,
        "Each trained once (seed {}) on the first {} training images and evaluated after every epoch on the last {} (the validation split). The chosen one holds the highest validation accuracy over its last three epochs.\n",
        searched[0].1.seed,
        group(60_000 - searched[0].0.config.validation.unwrap_or(0)),
        group(searched[0].0.config.validation.unwrap_or(0))
    )?;
    for n in &goal.notes {
        writeln!(s, "- {n}")?;
    }
    if !goal.notes.is_empty() {
        writeln!(s)?;
    }
    writeln!(
        s,
        "| candidate | params | dropout | augmentation | schedule | max val acc | last three (val) | lowest of the last three |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    for (cand, r) in &searched {
        let l3: Vec<String> = r.last3().iter().map(|v| format!("{v:.2}")).collect();
        let mark = if cand.name == chosen.name {
            " **(chosen)**"
        } else {
            ""
        };
        writeln!(
            s,
            "| `{}`{mark} | {} | {} | {} | {} | {:.2} | {} | {:.2} |",
            cand.name,
            group(Summary::of(&cand.config.arch)?.totals.total_params),
            dropout(&cand.config),
            augmentation(&cand.config),
            schedule(&cand.config),
            r.max_test(),
            l3.join(" / "),
            r.min_last3()
        )?;
    }
    writeln!(s)?;
    if !torch.is_empty() {
        let accs: Vec<Vec<f64>> = torch.iter().map(TorchRun::test_acc).collect();
        writeln!(s, "## The same recipe in PyTorch\n")?;
        writeln!(
            s,
            "`cargo xtask pytorch --out {}` trained the chosen recipe in PyTorch {} ({} threads) with `scripts/torch_recipe.py`: the net built from the same spec, PyTorch's initialisation, torchvision's transforms with their own draws, `torch.optim.SGD` and `OneCycleLR`. Different random numbers: compare the spread, not the rows.\n",
            out.display(),
            torch[0].torch,
            torch[0].threads
        )?;
        writeln!(
            s,
            "| seed | max test acc | last three epochs | lowest of the last three | ≥ {:.2} % held |",
            goal.target
        )?;
        writeln!(s, "|---|---|---|---|---|")?;
        for (r, a) in torch.iter().zip(&accs) {
            let l3: Vec<String> = last3(a).iter().map(|v| format!("{v:.2}")).collect();
            writeln!(
                s,
                "| {} | {:.2} | {} | {:.2} | {} |",
                r.seed,
                max(a),
                l3.join(" / "),
                min_last3(a),
                if min_last3(a) >= goal.target {
                    "yes"
                } else {
                    "no"
                }
            )?;
        }
        writeln!(s)?;
    }
    writeln!(s, "## Files\n")?;
    writeln!(
        s,
        "`goal.json` (the goal), `candidates/` (every recipe tried), `search/NAME/` (their validation runs), `runs/seedN/` (the chosen recipe's final runs: `config.json`, `history.json`/`.csv`, `model.safetensors`, `state.safetensors`){}.",
        if torch.is_empty() {
            ""
        } else {
            ", `pytorch/seedN.json`"
        }
    )?;
    write_atomic(&out.join("README.md"), s.as_bytes())?;
    Ok(())
}
