//! The tables a repository's README quotes, made from the committed reports alone, so the README
//! cannot drift from the runs: the three attempts beside the write-up and PyTorch, attempt 3 over
//! seeds, and the research goals beside the public anchors. `cargo xtask report` writes them
//! between markers; a test checks them.

use std::fmt::Write as _;
use std::path::Path;

use under8k_model::Summary;
use under8k_model::summary::group;

use super::error::{Context, Result};
use super::research::{self, Standing};
use super::runs::{Manifest, Run, TorchRun, load_run, load_run_in, load_torch, min_last3};

use super::report::{REFERENCE, TARGET};

/// The seed write-up's published maximum test accuracy of attempt `a`.
fn write_up_max(a: u8) -> f64 {
    REFERENCE[(a - 1) as usize].0
}

fn yes(v: bool) -> &'static str {
    if v { "yes" } else { "no" }
}

fn last3(r: &Run) -> String {
    let v: Vec<String> = r.last3().iter().map(|a| format!("{a:.2}")).collect();
    v.join(" / ")
}

/// PyTorch's runs of a recipe, in a cell: how many held the target, and their best maximum.
fn torch_cell(torch: &[TorchRun]) -> String {
    if torch.is_empty() {
        return "–".into();
    }
    let accs: Vec<Vec<f64>> = torch.iter().map(TorchRun::test_acc).collect();
    let held = accs.iter().filter(|a| min_last3(a) >= TARGET).count();
    let best = accs
        .iter()
        .flat_map(|a| a.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    format!("held in {held} of {} seeds, max {best:.2}", torch.len())
}

/// One row: label, params, max, last three, held, the write-up's max, PyTorch.
fn row(s: &mut String, label: &str, r: &Run, write_up: f64, torch: &str) -> Result<()> {
    writeln!(
        s,
        "| {label} | {} | {:.2} | {} | {} | {write_up:.2} | {torch} |",
        group(Summary::of(&r.config.arch)?.totals.total_params),
        r.max_test(),
        last3(r),
        yes(r.min_last3() >= TARGET),
    )?;
    Ok(())
}

/// The results table: the main report's attempts (seed 1) and the write-up's own attempt 3,
/// then attempt 3 over the seeds of `seeds` (a report of attempt 3 alone), each beside the
/// write-up's maximum and the same recipe in PyTorch.
pub fn results_table(report: &Path, seeds: &Path) -> Result<String> {
    let m = Manifest::existing(report)?.context("the main report has no reproduce.json")?;
    let mut s = String::from(
        "| attempt | params | max test acc (%) | last three epochs | ≥ 99.4 % held | write-up's max | same recipe in PyTorch |\n|---|---|---|---|---|---|---|\n",
    );
    for &a in &m.attempts {
        let r = load_run(report, a, 1)?;
        let torch = load_torch(report, a, &r.config)?;
        row(
            &mut s,
            &a.to_string(),
            &r,
            write_up_max(a),
            &torch_cell(&torch),
        )?;
    }
    if m.extras {
        let dir = super::runs::write_up_dir(report, 1);
        let r = load_run_in(&dir, 1)?;
        let torch = load_torch(&report.join("../write-up"), 3, &r.config).unwrap_or_default();
        row(
            &mut s,
            "3, the write-up's own StepLR",
            &r,
            write_up_max(3),
            &torch_cell(&torch),
        )?;
    }
    let sm = Manifest::existing(seeds)?.context("the seeds report has no reproduce.json")?;
    let runs = (1..=sm.seeds)
        .map(|seed| load_run(seeds, 3, seed))
        .collect::<Result<Vec<_>>>()?;
    let held = runs.iter().filter(|r| r.min_last3() >= TARGET).count();
    let (lo, hi) = runs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(r.min_last3()), hi.max(r.min_last3()))
        });
    let torch = load_torch(seeds, 3, &runs[0].config)?;
    writeln!(
        s,
        "| 3, seeds 1–{} | {} | {:.2}–{:.2} | lowest of each: {lo:.2}–{hi:.2} | **{held} of {}** | {:.2} | {} |",
        runs.len(),
        group(Summary::of(&runs[0].config.arch)?.totals.total_params),
        runs.iter().map(Run::max_test).fold(f64::INFINITY, f64::min),
        runs.iter()
            .map(Run::max_test)
            .fold(f64::NEG_INFINITY, f64::max),
        runs.len(),
        write_up_max(3),
        torch_cell(&torch)
    )?;
    Ok(s)
}

/// The research goals: each report's goal, outcome and figure, then the public anchors. The
/// reports are `docs/NAME` for each name, linked as such.
pub fn goals_table(docs: &Path, names: &[&str]) -> Result<String> {
    let mut s = String::from("| goal | outcome | net | report |\n|---|---|---|---|\n");
    for name in names {
        let dir = docs.join(name);
        let Standing {
            goal,
            met,
            figure,
            params,
            chosen,
        } = research::standing(&dir)?;
        writeln!(
            s,
            "| {} | **{}**: {} | `{chosen}`, {} params | [`docs/{name}/`](docs/{name}/README.md) |",
            goal.title,
            if met { "met" } else { "not met" },
            figure.replace('|', "/"),
            group(params),
        )?;
    }
    write!(s, "\n{}", super::anchors::table())?;
    Ok(s)
}

/// Replaces the text between `<!-- NAME -->` and `<!-- /NAME -->` in `text` with `block`; an
/// error when the markers are missing.
pub fn replace_block(text: &str, name: &str, block: &str) -> Result<String> {
    let (open, close) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let start = text
        .find(&open)
        .with_context(|| format!("no `{open}` marker"))?
        + open.len();
    let end = text[start..]
        .find(&close)
        .with_context(|| format!("no `{close}` marker after `{open}`"))?
        + start;
    Ok(format!("{}\n{}{}", &text[..start], block, &text[end..]))
}

/// The two set-up commands timed from a fresh clone (`scripts/time-fresh-clone.sh` writes
/// `first-run.json`).
#[derive(Debug, serde::Deserialize)]
struct FirstRun {
    date: String,
    cpu: String,
    cores: usize,
    first_command: String,
    first_minutes: f64,
    first_compile_minutes: f64,
    second_command: String,
    second_minutes: f64,
    second_compile_minutes: f64,
}

/// The quick start's two commands with their measured times.
pub fn timing(docs: &Path) -> Result<String> {
    let path = docs.join("first-run.json");
    let text = std::fs::read_to_string(&path).map_err(super::error::io(&path))?;
    let f: FirstRun = serde_json::from_str(&text).with_context(|| path.display().to_string())?;
    Ok(format!(
        "```sh\n{:<26}# {:.0} min: build, fetch MNIST, retrain the three attempts, verify them bit for bit, write docs/report/\n{:<26}# {:.0} min more: the tests (CI runs exactly this, via .ci/run)\n```\n\nMeasured from a fresh clone on {} cores of an {} ({}): {:.1} min compiling, then {:.1} min fetching and training; then {:.1} min compiling the tests and {:.1} running them (`scripts/time-fresh-clone.sh`).\n",
        f.first_command,
        f.first_minutes,
        f.second_command,
        f.second_minutes,
        f.cores,
        f.cpu,
        f.date,
        f.first_compile_minutes,
        f.first_minutes - f.first_compile_minutes,
        f.second_compile_minutes,
        f.second_minutes - f.second_compile_minutes
    ))
}

/// The reports under `docs/` the README quotes: the main report, attempt 3 over seeds, and the
/// research goals.
pub const QUOTED: [&str; 4] = ["report", "seeds", "under6k", "under8k-99.5"];

/// A README (`text`) with its tables made again from the reports under `docs`.
pub fn refresh(text: &str, docs: &Path) -> Result<String> {
    let results = results_table(&docs.join(QUOTED[0]), &docs.join(QUOTED[1]))?;
    let goals = goals_table(docs, &QUOTED[2..])?;
    let text = replace_block(text, "results", &results)?;
    let text = replace_block(&text, "goals", &goals)?;
    replace_block(&text, "timing", &timing(docs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_between_markers_is_replaced_and_missing_markers_are_named() {
        let t = "a\n<!-- x -->\nold\n<!-- /x -->\nb\n";
        assert_eq!(
            replace_block(t, "x", "new\n").unwrap(),
            "a\n<!-- x -->\nnew\n<!-- /x -->\nb\n"
        );
        let e = replace_block("a", "x", "").unwrap_err().to_string();
        assert!(e.contains("no `<!-- x -->` marker"), "{e}");
    }
}
