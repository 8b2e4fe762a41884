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

use serde::{Deserialize, Serialize};
use under8k_model::Summary;
use under8k_model::checkpoint::write_atomic;
use under8k_model::summary::group;
use under8k_sched::Schedule;

use super::Log;
use super::error::{Context, ExperimentError, Result};
use super::reproduce::Mode;
use super::runs::{
    Run, TorchRun, Verified, cpu_description, last3, load_run_in, max, mean_sd, min_last3,
};
use super::sweep::slurm::SlurmOptions;
use super::sweep::{self, Busy, JobOptions, Manifest as SweepManifest, SweepJob};
use super::verify::{Outcome, refuse_differences, verification};
use crate::TrainConfig;
use crate::config::DataRecord;
use crate::data::Prepared;
use crate::refuse as bail;

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
    #[serde(default = "one", skip_serializing_if = "is_one")]
    candidate_seeds: u64,
    chosen: String,
    cpu: String,
    threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified: Option<Verified>,
}

fn one() -> u64 {
    1
}

fn is_one(k: &u64) -> bool {
    *k == 1
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
        let config =
            crate::recipe::load(&path, &[]).map_err(|e| ExperimentError::Refused(e.to_string()))?;
        config
            .validate()
            .with_context(|| path.display().to_string())?;
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
    c.fit_schedule(crate::config::MNIST_TRAIN_IMAGES);
    c
}

/// The search sweep's directory.
fn search_dir(out: &Path) -> PathBuf {
    out.join("search")
}

/// The final sweep's directory.
fn final_dir(out: &Path) -> PathBuf {
    out.join("runs")
}

/// A candidate's validation seeds: its own and the `k - 1` after it.
fn candidate_seeds(c: &Candidate, k: u64) -> impl Iterator<Item = u64> {
    c.config.seed..c.config.seed + k.max(1)
}

/// A candidate's run of `seed` in the search sweep: `NAME` with one seed per candidate (as
/// reports made before `--candidate-seeds` have it), else `NAME/seedS`.
fn search_run(name: &str, seed: u64, k: u64) -> PathBuf {
    match k {
        0 | 1 => PathBuf::from(name),
        _ => Path::new(name).join(format!("seed{seed}")),
    }
}

/// The search: every candidate × its validation seeds.
fn search_manifest(candidates: &[Candidate], k: u64, data: &DataRecord) -> Result<SweepManifest> {
    let mut jobs = vec![];
    for c in candidates {
        for seed in candidate_seeds(c, k) {
            let mut config = c.config.clone();
            config.seed = seed;
            let dir = search_run(&c.name, seed, k);
            jobs.push(SweepJob::new(jobs.len(), &c.name, config, dir));
        }
    }
    SweepManifest::new(data.clone(), jobs)
}

/// The chosen recipe's final runs, seeds 1..=n, in `runs/seedS`.
fn final_manifest(chosen: &Candidate, n: u64, data: &DataRecord) -> Result<SweepManifest> {
    let jobs = (1..=n)
        .map(|seed| {
            let dir = PathBuf::from(format!("seed{seed}"));
            SweepJob::new(
                (seed - 1) as usize,
                &chosen.name,
                final_config(&chosen.config, seed),
                dir,
            )
        })
        .collect();
    SweepManifest::new(data.clone(), jobs)
}

/// Each candidate's validation runs, loaded.
fn searched(out: &Path, candidates: &[Candidate], k: u64) -> Result<Vec<Vec<Run>>> {
    candidates
        .iter()
        .map(|c| {
            candidate_seeds(c, k)
                .map(|s| load_run_in(&search_dir(out).join(search_run(&c.name, s, k)), s))
                .collect()
        })
        .collect()
}

/// Mean over a candidate's seeds.
fn mean_of(runs: &[Run], f: fn(&Run) -> f64) -> f64 {
    mean_sd(&runs.iter().map(f).collect::<Vec<_>>()).0
}

/// The candidate whose validation accuracy holds highest over its last three epochs, by the mean
/// over its seeds of each seed's lowest of the last three (ties: the higher mean best epoch,
/// then the first name).
pub fn choose(names: &[&str], runs: &[Vec<Run>]) -> Option<usize> {
    (0..names.len().min(runs.len()))
        .filter(|&i| !runs[i].is_empty())
        .max_by(|&a, &b| {
            mean_of(&runs[a], Run::min_last3)
                .total_cmp(&mean_of(&runs[b], Run::min_last3))
                .then(mean_of(&runs[a], Run::max_test).total_cmp(&mean_of(&runs[b], Run::max_test)))
                .then(names[b].cmp(names[a]))
        })
}

fn chosen_index(candidates: &[Candidate], runs: &[Vec<Run>]) -> Result<usize> {
    let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
    choose(&names, runs).context("no candidate has a validation run")
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

/// What `research` does.
#[derive(Debug, Clone)]
pub struct Research {
    /// The report directory: it holds `goal.json` and `candidates/*.json`.
    pub out: PathBuf,
    /// Seeds of the chosen recipe (1, …, N).
    pub seeds: u64,
    /// Validation seeds per candidate (its own seed and the ones after it): candidates are
    /// judged by the mean of their seeds' lowest of the last three epochs.
    pub candidate_seeds: u64,
    /// How complete final runs are treated.
    pub mode: Mode,
    /// How complete search runs are treated: [`Mode::SkipExisting`] keeps the search (and its
    /// choice) as it is while the finals are verified or re-accepted.
    pub search_mode: Mode,
    /// Runs at once on this machine.
    pub jobs: usize,
    /// Threads per run.
    pub threads: usize,
    /// How the command is spelled (`cargo xtask research`, `under8k research`), for the report.
    pub program: String,
    /// Run the sweeps on Slurm instead of here: each stage is one job array, and the next step
    /// is this command again, submitted to run after it.
    pub slurm: Option<SlurmStages>,
}

/// A research round on Slurm: the arrays' options, and the arguments that run this command
/// again on a node (with the same options) once a stage's array has succeeded.
#[derive(Debug, Clone)]
pub struct SlurmStages {
    /// The arrays' and the next step's `#SBATCH` options, binary and data.
    pub options: SlurmOptions,
    /// The binary's arguments for the next step.
    pub next: Vec<String>,
}

/// What one call of [`research`] got to.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The report is written.
    Written,
    /// A stage was submitted to Slurm: its array's id and the next step's.
    Submitted {
        /// The stage: `search` or `final`.
        stage: &'static str,
        /// The array's job id.
        array: String,
        /// The next step's job id.
        next: String,
    },
}

/// Runs a stage's sweep here, or submits it; `None` when it was submitted.
#[allow(clippy::too_many_arguments)]
fn stage(
    name: &'static str,
    dir: &Path,
    m: &SweepManifest,
    mode: Mode,
    opts: &Research,
    data: &Prepared,
    stop: &AtomicBool,
    log: Log,
) -> Result<(Vec<(String, Outcome)>, Progress)> {
    m.write_over(dir)?;
    if let Some(slurm) = &opts.slurm {
        let states = sweep::states(dir, m);
        if !sweep::Counts::of(&states).complete() {
            let script = dir.join("sweep.sbatch");
            sweep::slurm::write_script(
                &script,
                &sweep::slurm::array_script(dir, m.jobs.len(), &slurm.options)?,
            )?;
            let array = sweep::slurm::submit(&script, None)?;
            let next_script = opts.out.join("research.sbatch");
            let next = sweep::slurm::step_script(
                "under8k-research",
                &opts.out,
                &slurm.next,
                &slurm.options,
            );
            sweep::slurm::write_script(&next_script, &next)?;
            let next = sweep::slurm::submit(&next_script, Some(&array))?;
            log(&format!(
                "{name}: {} jobs submitted as Slurm array {array}; the next step is job {next}",
                m.jobs.len()
            ));
            return Ok((
                vec![],
                Progress::Submitted {
                    stage: name,
                    array,
                    next,
                },
            ));
        }
    }
    let job_opts = JobOptions {
        mode: match opts.slurm {
            Some(_) => Mode::SkipExisting,
            None => mode,
        },
        busy: Busy::Skip,
        threads: opts.threads,
    };
    let sum = sweep::run_all(dir, m, data, opts.jobs, job_opts, stop, log);
    if let Some((i, e)) = sum.failed.into_iter().next() {
        return Err(e).with_context(|| format!("{name} job {i}"));
    }
    if !sum.busy.is_empty() || !sum.interrupted.is_empty() {
        bail!(
            "{name}: jobs {:?} were busy in another process or interrupted; run the command again",
            [sum.busy, sum.interrupted].concat()
        );
    }
    let outcomes = sum
        .done
        .into_iter()
        .map(|(i, o)| (m.jobs[i].label(), o))
        .collect();
    Ok((outcomes, Progress::Written))
}

/// A research round: every candidate on its validation split (as a sweep), the one that holds
/// highest chosen, its final seeds on the test set (a second sweep), then `research.json` and
/// the report. With Slurm, each call does what it can and submits the rest.
pub fn research(opts: &Research, data: &Prepared, stop: &AtomicBool, log: Log) -> Result<Progress> {
    let start = std::time::Instant::now();
    crate::refuse_unless!(opts.seeds > 0, "--seeds must be at least 1");
    crate::refuse_unless!(
        opts.candidate_seeds > 0,
        "--candidate-seeds must be at least 1"
    );
    let goal: Goal = read_json(&opts.out.join("goal.json"))?;
    let candidates = candidates(&opts.out, &goal)?;
    for c in &candidates {
        if c.config.data != data.record {
            bail!("candidate {}: trains on other data than MNIST", c.name);
        }
    }
    let k = opts.candidate_seeds;
    let search = search_manifest(&candidates, k, &data.record)?;
    let (mut outcomes, progress) = stage(
        "search",
        &search_dir(&opts.out),
        &search,
        opts.search_mode,
        opts,
        data,
        stop,
        log,
    )?;
    if progress != Progress::Written {
        return Ok(progress);
    }
    let runs = searched(&opts.out, &candidates, k)?;
    let at = chosen_index(&candidates, &runs)?;
    let chosen = &candidates[at];
    log(&format!(
        "chosen on validation: {} (lowest of its last three epochs {:.2} %, mean of {k} seed{})",
        chosen.name,
        mean_of(&runs[at], Run::min_last3),
        if k == 1 { "" } else { "s" }
    ));
    let finals = final_manifest(chosen, opts.seeds, &data.record)?;
    let (more, progress) = stage(
        "final",
        &final_dir(&opts.out),
        &finals,
        opts.mode,
        opts,
        data,
        stop,
        log,
    )?;
    if progress != Progress::Written {
        return Ok(progress);
    }
    outcomes.extend(more);
    refuse_differences(&outcomes)?;
    let previous: Option<Manifest> = read_json(&opts.out.join("research.json")).ok();
    let trained = outcomes
        .iter()
        .any(|(_, o)| matches!(o, Outcome::Trained | Outcome::Accepted));
    let verified = verification(
        &outcomes,
        previous.as_ref().and_then(|m| m.verified.clone()),
        start.elapsed().as_secs_f64() / 60.0,
    );
    let mut command = format!("{} --out {}", opts.program, opts.out.display());
    if opts.seeds != 5 {
        command += &format!(" --seeds {}", opts.seeds);
    }
    if k != 1 {
        command += &format!(" --candidate-seeds {k}");
    }
    // Where the runs were trained stays what it was unless this command trained one.
    let (cpu, threads) = match previous.filter(|_| !trained) {
        Some(p) => (p.cpu, p.threads),
        None => (cpu_description(), opts.threads),
    };
    let manifest = Manifest {
        command,
        seeds: opts.seeds,
        candidate_seeds: k,
        chosen: chosen.name.clone(),
        cpu,
        threads,
        verified,
    };
    write_atomic(
        &opts.out.join("research.json"),
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
    )?;
    write(&opts.out)?;
    log(&format!(
        "report written to {}",
        opts.out.join("README.md").display()
    ));
    Ok(Progress::Written)
}

/// Where a research report stands: its goal, whether the chosen recipe meets it, the figure
/// its rule reads, and the chosen net.
pub struct Standing {
    /// The goal.
    pub goal: Goal,
    /// Met or not.
    pub met: bool,
    /// The figure the rule reads, in words.
    pub figure: String,
    /// The chosen net's parameters.
    pub params: usize,
    /// The chosen candidate.
    pub chosen: String,
}

/// Where the research report in `out` stands, from its saved files.
pub fn standing(out: &Path) -> Result<Standing> {
    let goal: Goal = read_json(&out.join("goal.json"))?;
    let m: Manifest = read_json(&out.join("research.json"))?;
    let finals = (1..=m.seeds)
        .map(|s| load_run_in(&final_dir(out).join(format!("seed{s}")), s))
        .collect::<Result<Vec<_>>>()?;
    let (met, figure) = judge(&goal, &finals);
    let params = Summary::of(&finals[0].config.arch)?.totals.total_params;
    Ok(Standing {
        goal,
        met,
        figure: figure.replace("**", ""),
        params,
        chosen: m.chosen,
    })
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

/// The optimizer, its momentum (or β₁) and weight decay, and the loss and averaging around it:
/// "SGD momentum 0.9 (cycled 0.85–0.95)", "Adam (β₁ cycled 0.85–0.95), weight decay 5e-5,
/// label smoothing 0.1, EMA 0.999".
fn training(c: &TrainConfig) -> String {
    let cycled = match &c.schedule {
        Schedule::OneCycle {
            momentum: Some((lo, hi)),
            ..
        } => Some(format!("cycled {lo}–{hi}")),
        _ => None,
    };
    let mut s = match c.optimizer {
        crate::Optimizer::Sgd {
            nesterov,
            dampening,
        } => {
            let mut s = format!("SGD{} momentum ", if nesterov { " Nesterov" } else { "" });
            s += &cycled.map_or(c.momentum.to_string(), |r| r.replace("cycled ", ""));
            if dampening > 0.0 {
                s += &format!(", dampening {dampening}");
            }
            s
        }
        crate::Optimizer::Adam {
            decoupled, amsgrad, ..
        } => format!(
            "{}{}{}",
            if decoupled { "AdamW" } else { "Adam" },
            if amsgrad { " (AMSGrad)" } else { "" },
            cycled.map_or(String::new(), |r| format!(" (β₁ {r})"))
        ),
    };
    if c.weight_decay > 0.0 {
        s += &format!(", weight decay {}", c.weight_decay);
    }
    if c.label_smoothing > 0.0 {
        s += &format!(", label smoothing {}", c.label_smoothing);
    }
    if let Some(e) = c.ema {
        s += &format!(", EMA {}", e.decay);
        if e.model == crate::EmaModel::Raw {
            s += " (raw model tested)";
        }
    }
    s
}

fn schedule(c: &TrainConfig) -> String {
    match &c.schedule {
        Schedule::OneCycle { max_lr, .. } => format!("one-cycle to {max_lr}"),
        Schedule::Constant { lr } => format!("constant {lr}"),
        s => format!("decaying from {}", s.lr(0, 0)),
    }
}

/// "1 thread per run", "2 threads per run" (the bits do not depend on it).
fn per_run(threads: usize) -> String {
    format!(
        "{threads} thread{} per run",
        if threads == 1 { "" } else { "s" }
    )
}

/// Writes the report of `out` from its saved runs.
pub fn write(out: &Path) -> Result<()> {
    let goal: Goal = read_json(&out.join("goal.json"))?;
    let m: Manifest = read_json(&out.join("research.json"))?;
    let candidates = candidates(out, &goal)?;
    let runs = searched(out, &candidates, m.candidate_seeds)?;
    let chosen = &candidates[chosen_index(&candidates, &runs)?];
    let finals = (1..=m.seeds)
        .map(|s| load_run_in(&final_dir(out).join(format!("seed{s}")), s))
        .collect::<Result<Vec<_>>>()?;
    let c = &finals[0].config;
    let summary = Summary::of(&c.arch)?;
    write_atomic(&out.join("spec.json"), (c.arch.to_json() + "\n").as_bytes())?;
    write_atomic(&out.join("summary.txt"), summary.to_table().as_bytes())?;
    super::plot::curves_titled(
        &out.join("curves.png"),
        &format!(
            "{} ({} params)",
            chosen.name,
            group(summary.totals.total_params)
        ),
        crate::plots::COLORS[2],
        &finals,
    )?;
    let torch = (1..)
        .map(|s| super::runs::result_path_research(out, s))
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
            "Verified bit for bit on {} ({}, {}): every run retrained identical to the committed one ({} runs, {} epochs).\n",
            v.date,
            v.cpu,
            per_run(v.threads),
            v.runs,
            v.epochs
        )?,
        Some(v) => writeln!(
            s,
            "Partly verified on {} ({}, {}): {} of the {} runs retrained identical to the committed ones ({}); the others were trained by that command, and running it again verifies them.\n",
            v.date,
            v.cpu,
            per_run(v.threads),
            v.of.len(),
            v.total,
            v.of.join(", ")
        )?,
        None => writeln!(
            s,
            "Trained on {} ({}); running `{}` again retrains every run and checks it is bit-identical.\n",
            m.cpu,
            per_run(m.threads),
            m.command
        )?,
    }
    numerics_note(&mut s, &runs, &finals)?;
    finals_table(&mut s, &goal, &finals)?;
    writeln!(s, "![curves of the chosen recipe](curves.png)\n")?;
    writeln!(s, "{}", super::anchors::table())?;
    writeln!(s, "### Recipe\n")?;
    writeln!(
        s,
        "`candidates/{}.json` without its validation split: {} epochs, batch {}, {}, {} per batch; augmentation: {}; dropout as in the spec. The net (`spec.json`; `under8k summary --arch spec.json`, in `summary.txt`):\n",
        chosen.name,
        c.epochs,
        c.batch_size,
        training(c),
        schedule(c),
        augmentation(c)
    )?;
    writeln!(s, "```text\n{}```\n", summary.to_table())?;
    search_log(&mut s, &goal, &candidates, &runs, chosen, m.candidate_seeds)?;
    torch_section(&mut s, out, &goal, &torch)?;
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

/// A sentence when the search and the finals were trained with different numerics versions of
/// the engine (the finals re-accepted after a change, the search kept with `--keep-search`).
fn numerics_note(s: &mut String, searched: &[Vec<Run>], finals: &[Run]) -> Result<()> {
    let search = super::runs::numerics_of(searched.iter().flatten());
    let last = super::runs::numerics_of(finals.iter());
    if search != last {
        writeln!(
            s,
            "The search's runs were trained with the engine's numerics version {search} and kept as they are (`--keep-search`); the final runs with version {last}. The choice is the search's, and the figures below are the finals'.\n"
        )?;
    }
    Ok(())
}

/// The chosen recipe's final runs, one row per seed and their mean ± sd.
fn finals_table(s: &mut String, goal: &Goal, finals: &[Run]) -> Result<()> {
    writeln!(s, "## The chosen recipe on the test set\n")?;
    writeln!(
        s,
        "| seed | max test acc | last three epochs | lowest of the last three | ≥ {:.2} % held |",
        goal.target
    )?;
    writeln!(s, "|---|---|---|---|---|")?;
    for r in finals {
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
    Ok(())
}

/// `m ± sd` of `f` over `runs`.
fn spread(runs: &[Run], f: fn(&Run) -> f64) -> String {
    let (m, sd) = mean_sd(&runs.iter().map(f).collect::<Vec<_>>());
    format!("{m:.2} ± {sd:.2}")
}

/// Every candidate tried, with its validation figures (over its seeds when it has several).
fn search_log(
    s: &mut String,
    goal: &Goal,
    candidates: &[Candidate],
    runs: &[Vec<Run>],
    chosen: &Candidate,
    k: u64,
) -> Result<()> {
    let validation = candidates[0].config.validation.unwrap_or(0);
    writeln!(s, "## Search log: every recipe tried\n")?;
    writeln!(
        s,
        "{} on the first {} training images and evaluated after every epoch on the last {} (the validation split). The chosen one holds the highest validation accuracy over its last three epochs{}.\n",
        match k {
            1 => format!("Each trained once (seed {})", runs[0][0].seed),
            _ => format!(
                "Each trained with {k} seeds ({}–{})",
                runs[0][0].seed,
                runs[0][0].seed + k - 1
            ),
        },
        group(60_000 - validation),
        group(validation),
        match k {
            1 => "",
            _ => " (the mean over its seeds of each seed's lowest of the last three)",
        }
    )?;
    for n in &goal.notes {
        writeln!(s, "- {n}")?;
    }
    if !goal.notes.is_empty() {
        writeln!(s)?;
    }
    writeln!(
        s,
        "| candidate | params | dropout | augmentation | optimizer | schedule | max val acc | last three (val) | lowest of the last three |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|")?;
    for (cand, rs) in candidates.iter().zip(runs) {
        let r = &rs[0];
        let l3: Vec<String> = match k {
            1 => r.last3().iter().map(|v| format!("{v:.2}")).collect(),
            _ => vec![spread(rs, Run::final_acc) + " (last)"],
        };
        let mark = if cand.name == chosen.name {
            " **(chosen)**"
        } else {
            ""
        };
        writeln!(
            s,
            "| `{}`{mark} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
            cand.name,
            group(Summary::of(&cand.config.arch)?.totals.total_params),
            dropout(&cand.config),
            augmentation(&cand.config),
            training(&cand.config),
            schedule(&cand.config),
            mean_of(rs, Run::max_test),
            l3.join(" / "),
            match k {
                1 => format!("{:.2}", r.min_last3()),
                _ => spread(rs, Run::min_last3),
            }
        )?;
    }
    writeln!(s)?;
    Ok(())
}

/// The chosen recipe trained in PyTorch, when `cargo xtask pytorch` saved its runs.
fn torch_section(s: &mut String, out: &Path, goal: &Goal, torch: &[TorchRun]) -> Result<()> {
    if !torch.is_empty() {
        let accs: Vec<Vec<f64>> = torch.iter().map(TorchRun::test_acc).collect();
        writeln!(s, "## The same recipe in PyTorch\n")?;
        writeln!(
            s,
            "`cargo xtask pytorch --out {}` trained the chosen recipe in PyTorch {} ({} threads) with `scripts/torch_recipe.py`: the net built from the same spec, PyTorch's initialisation, torchvision's transforms with their own draws, `torch.optim`'s optimizer and `OneCycleLR`, and `AveragedModel` where the recipe averages. Different random numbers: compare the spread, not the rows.\n",
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
    Ok(())
}
