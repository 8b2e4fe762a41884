//! The README stays short and true: at most 150 lines; its tables are what `cargo xtask report`
//! makes from the committed reports, byte for byte; and outside those tables and code, the only
//! figures it states are the exercise's own (the seed net's parameter count, computed here by
//! the calculator, and the 99.4 % target).

use std::path::PathBuf;

use under8k_model::{ArchSpec, Summary, summary::group};
use under8k_train::experiments::readme;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

#[test]
fn the_readme_is_short() {
    let lines = text().lines().count();
    assert!(lines <= 150, "README.md has {lines} lines");
}

#[test]
fn the_readme_tables_are_the_committed_reports() {
    let t = text();
    let fresh = readme::refresh(&t, &root().join("docs")).unwrap();
    assert!(
        fresh == t,
        "README.md's tables differ from the reports: run `cargo xtask report`"
    );
}

/// The README without its generated blocks, code fences and code spans.
fn prose(t: &str) -> String {
    let mut out = String::new();
    let (mut block, mut fence) = (false, false);
    for line in t.lines() {
        let l = line.trim();
        if l.starts_with("<!-- /") {
            block = false;
            continue;
        }
        if l.starts_with("<!-- ") {
            block = true;
            continue;
        }
        if l.starts_with("```") {
            fence = !fence;
            continue;
        }
        if block || fence {
            continue;
        }
        // Drop code spans and link targets.
        let no_code: Vec<&str> = line.split('`').step_by(2).collect();
        let (mut skip, mut prev) = (false, ' ');
        for c in no_code.join(" ").chars() {
            skip |= prev == ']' && c == '(';
            if !skip {
                out.push(c);
            }
            skip &= c != ')';
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Figures: numbers with a decimal point or a thousands separator, or followed by a percent sign.
fn figures(t: &str) -> Vec<String> {
    let chars: Vec<char> = t.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric()) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            let pct = chars[i..]
                .iter()
                .take(2)
                .collect::<String>()
                .trim_start()
                .starts_with('%');
            if n.contains(['.', ',']) || pct {
                out.push(n);
            }
        }
        i += 1;
    }
    out
}

#[test]
fn the_readme_states_no_figure_by_hand() {
    let params = group(Summary::of(&ArchSpec::seed()).unwrap().totals.total_params);
    let allowed = [params.as_str(), "99.4"];
    let stray: Vec<String> = figures(&prose(&text()))
        .into_iter()
        .filter(|f| !allowed.contains(&f.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "figures outside the generated tables: {stray:?}"
    );
    // The check itself finds figures.
    assert_eq!(
        figures("held 99.47 % in 4 of 5, 7,432 params, 12 %"),
        ["99.47", "7,432", "12"]
    );
}
