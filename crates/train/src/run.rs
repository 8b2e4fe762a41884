//! The training loop: deterministic, checkpointed after every epoch, resumable bit for bit.
//!
//! Randomness: the run's seed yields independent ChaCha8 streams (`stream(seed, purpose, index)`):
//! purpose 0 — weight init; 1 — dropout masks of epoch `e`; 2 — order and rotations of epoch `e`.
//! Because each epoch's streams are derived from (seed, epoch) alone, resuming after epoch `e`
//! needs no RNG state, and a resumed run is bit-identical to an uninterrupted one.
//!
//! Files in the run directory, each replaced atomically: `config.json`; `history.json` and
//! `history.csv` (after every epoch); `state.safetensors` (model, BatchNorm buffers, optimizer
//! buffers, history and config fingerprint — everything `resume` needs); `model.safetensors`
//! (the model alone, loadable by PyTorch).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use under8k_mnist_data::augment::RandomRotation;
use under8k_mnist_data::batch::{BatchConfig, EpochBatches};
use under8k_mnist_data::{DataError, Mnist, Normalization, Split};
use under8k_model::checkpoint::{self, CheckpointError};
use under8k_model::{ModelError, Net};
use under8k_sched::{Schedule, Scheduler};

use crate::config::{ConfigError, TrainConfig};
use crate::ema::{Ema, EmaModel};
use crate::history::{EpochRecord, History};
use crate::optim::Opt;
use crate::overlap::Overlapped;

/// Training failed or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Data problem.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Model problem.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Invalid optimizer settings.
    #[error(transparent)]
    Optimizer(#[from] crate::optim::OptimizerError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Writing or reading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "loss is {loss} at epoch {epoch}, batch {batch}: training stopped; the checkpoint of the last completed epoch is kept"
    )]
    NonFinite {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch.
        batch: usize,
        /// The loss value.
        loss: f64,
    },
    /// The data given is not the data the config names.
    #[error(
        "the config trains on {dataset}, whose {file} has MD5 {expected}, but the data given has {found}"
    )]
    WrongData {
        /// The config's dataset.
        dataset: String,
        /// Which of the four files differs.
        file: &'static str,
        /// The config's MD5 for it.
        expected: String,
        /// The data's.
        found: String,
    },
    /// The net's input does not fit the data's images.
    #[error("the net `{arch}` takes {c}x{h}x{w} inputs but the data's images are 1x{rows}x{cols}", c = input[0], h = input[1], w = input[2])]
    InputMismatch {
        /// The net's name.
        arch: String,
        /// Its input (channels, height, width).
        input: [usize; 3],
        /// The images' height.
        rows: usize,
        /// The images' width.
        cols: usize,
    },
    /// The net's output count is not the data's class count.
    #[error("the net `{arch}` has {outputs} outputs but the data has {classes} classes")]
    ClassMismatch {
        /// The net's name.
        arch: String,
        /// Channels of its last layer.
        outputs: usize,
        /// The data's class count (largest training label + 1).
        classes: usize,
    },
    /// The run directory's state cannot be resumed.
    #[error("{}: cannot resume: {reason}", path.display())]
    Resume {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// How [`train`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From a fresh net (whatever the run directory holds is replaced as the run goes).
    Fresh,
    /// From the state saved in the run directory, if there is one (it must come from the same
    /// config); from a fresh net otherwise.
    Resume,
}

/// One training batch's figures, for progress display.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based batch within the epoch.
    pub batch: usize,
    /// Batches in the epoch.
    pub batches: usize,
    /// This batch's loss.
    pub loss: f64,
    /// Running training accuracy in the epoch (%).
    pub running_acc: f64,
    /// Images per second so far in the epoch.
    pub img_per_s: f64,
}

/// Receives progress; every method defaults to nothing, and `()` implements it. [`train`] calls
/// it from a thread of rayon's pool, so the one it takes is `Send`.
pub trait Observer {
    /// An epoch starts.
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// A batch is done.
    fn batch(&mut self, _stats: &BatchStats) {}
    /// An epoch is done, evaluated and saved.
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

impl Observer for () {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// All epochs completed so far (including those before a resume).
    pub history: History,
    /// True when the stop flag ended the run early (resume continues after the last completed epoch).
    pub interrupted: bool,
}

/// Test-set evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Sum-reduced NLL / N.
    pub loss: f64,
    /// Correct predictions.
    pub correct: usize,
    /// Images.
    pub total: usize,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Every image's prediction, in the split's order.
    pub predictions: Vec<Prediction>,
}

/// What the net made of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The true class.
    pub label: u32,
    /// The predicted class (the highest output).
    pub predicted: u32,
    /// The probability the net gives its prediction.
    pub probability: f32,
    /// The probability it gives the true class.
    pub label_probability: f32,
}

impl Evaluation {
    /// Accuracy in %.
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.total.max(1) as f64
    }
}

/// A ChaCha8 stream for (seed, purpose, index): the seed's key, stream number `purpose·2³² + index`.
pub fn stream(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((purpose << 32) | (index & 0xffff_ffff));
    rng
}

/// The file names in a run directory.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The directory.
    pub dir: PathBuf,
}

impl RunFiles {
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// `history.json`.
    pub fn history_json(&self) -> PathBuf {
        self.dir.join("history.json")
    }
    /// `history.csv`.
    pub fn history_csv(&self) -> PathBuf {
        self.dir.join("history.csv")
    }
    /// `state.safetensors`: everything needed to resume.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.safetensors")
    }
    /// `model.safetensors`: the model alone (PyTorch `state_dict` layout).
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
}

/// Evaluates `net` (eval mode) on `split`.
pub fn evaluate(
    net: &Net,
    split: &Split,
    norm: Normalization,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let cfg = BatchConfig::new(batch_size, false, None, norm)?;
    let classes = outputs(net.spec()).max(split.classes());
    let mut confusion = vec![vec![0usize; classes]; classes];
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let mut predictions = Vec::with_capacity(split.len());
    // The next batch is assembled beside this one's evaluation, on the engine's threads.
    let mut batches = Overlapped::new(EpochBatches::new(split, cfg, stream(0, 0, 0)).on(device));
    while let Some(batch) = batches.next() {
        let batch = batch?;
        let logp = batches.beside(|| net.infer(&batch.images))?;
        let n = batch.labels.dim(0)?;
        loss += candle_nn::loss::nll(&logp, &batch.labels)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?
            * n as f64;
        let pred = logp.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let probs = logp.exp()?.to_vec2::<f32>()?;
        for ((&p, t), probs) in pred.iter().zip(batch.labels.to_vec1::<u32>()?).zip(probs) {
            confusion[t as usize][p as usize] += 1;
            correct += (p == t) as usize;
            predictions.push(Prediction {
                label: t,
                predicted: p,
                probability: probs[p as usize],
                label_probability: probs[t as usize],
            });
        }
    }
    Ok(Evaluation {
        loss: loss / split.len() as f64,
        correct,
        total: split.len(),
        confusion,
        predictions,
    })
}

/// Channels of the net's last layer (its class count).
fn outputs(spec: &under8k_model::ArchSpec) -> usize {
    spec.resolve()
        .ok()
        .and_then(|layers| layers.last().map(|l| l.output.c))
        .unwrap_or(0)
}

/// Checks, before anything is written, that `data` is the data `config` names and that the
/// net's input and output fit it.
pub fn check_data(config: &TrainConfig, data: &Mnist) -> Result<(), TrainError> {
    const FILES: [&str; 4] = [
        "training images",
        "training labels",
        "test images",
        "test labels",
    ];
    let found = data.md5s();
    if let Some(i) = (0..4).find(|&i| found[i] != config.data.md5[i]) {
        return Err(TrainError::WrongData {
            dataset: config.data.dataset.clone(),
            file: FILES[i],
            expected: config.data.md5[i].clone(),
            found: found[i].clone(),
        });
    }
    check_fit(&config.arch, data)
}

/// Checks that the spec is valid, that its input is the data's image size and its output count
/// the data's class count.
pub fn check_fit(arch: &under8k_model::ArchSpec, data: &Mnist) -> Result<(), TrainError> {
    arch.resolve().map_err(under8k_model::ModelError::from)?;
    let (rows, cols) = (data.train.images.rows, data.train.images.cols);
    if arch.input != [1, rows, cols] {
        return Err(TrainError::InputMismatch {
            arch: arch.name.clone(),
            input: arch.input,
            rows,
            cols,
        });
    }
    let (outputs, classes) = (outputs(arch), data.classes());
    if outputs != classes {
        return Err(TrainError::ClassMismatch {
            arch: arch.name.clone(),
            outputs,
            classes,
        });
    }
    Ok(())
}

const STATE_FORMAT: &str = "under8k-train-state-1";

/// A run's weight averaging: the average, the net its weights are loaded into to evaluate and
/// save it, and which model the run reports.
struct Averaging {
    ema: Ema,
    net: Net,
    model: EmaModel,
}

/// What a run's state holds besides its config: the trained net, the optimizer, the weight
/// average if any, and the net saved as `model.safetensors` (the trained or the averaged one).
struct State<'a> {
    net: &'a Net,
    opt: &'a Opt,
    ema: Option<&'a Ema>,
    saved: &'a Net,
}

fn save_state(
    files: &RunFiles,
    config: &TrainConfig,
    state: State<'_>,
    history: &History,
) -> Result<(), TrainError> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in checkpoint::state_dict(state.net)? {
        tensors.insert(format!("model.{k}"), v);
    }
    for (k, v) in state.opt.buffers()? {
        tensors.insert(format!("optim.{k}"), v.to_dtype(DType::F32)?);
    }
    let mut metadata = HashMap::new();
    if let Some(ema) = state.ema {
        for (k, v) in ema.values() {
            tensors.insert(
                format!("ema.{k}"),
                Tensor::from_slice(v, v.len(), &Device::Cpu)?,
            );
        }
        metadata.insert("ema_updates".to_string(), ema.n_averaged().to_string());
    }
    metadata.extend([
        ("format".to_string(), STATE_FORMAT.to_string()),
        (
            "fingerprint".to_string(),
            format!("{:016x}", config.fingerprint()),
        ),
        (
            "history".to_string(),
            serde_json::to_string(history).expect("history serialises"),
        ),
    ]);
    let bytes = checkpoint::to_bytes(&tensors, Some(metadata)).map_err(|source| {
        CheckpointError::Serialize {
            path: files.state(),
            source,
        }
    })?;
    checkpoint::write_atomic(&files.state(), &bytes)?;
    checkpoint::save(state.saved, &files.model())?;
    let json = serde_json::to_string_pretty(history).expect("history serialises");
    checkpoint::write_atomic(&files.history_json(), json.as_bytes())?;
    checkpoint::write_atomic(&files.history_csv(), history.to_csv().as_bytes())?;
    Ok(())
}

/// Reads a state file: the history it holds (the net, optimizer and weight average are restored
/// in place).
fn load_state(
    files: &RunFiles,
    config: &TrainConfig,
    net: &Net,
    opt: &mut Opt,
    ema: Option<&mut Ema>,
) -> Result<History, TrainError> {
    let path = files.state();
    let fail = |reason: String| TrainError::Resume {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| fail(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(fail("not an under8k training state".into()));
    }
    if meta.get("fingerprint") != Some(&format!("{:016x}", config.fingerprint())) {
        return Err(fail(
            "it was written by a different configuration (use a fresh --out, or drop --resume)"
                .into(),
        ));
    }
    let history: History =
        serde_json::from_str(meta.get("history").map(String::as_str).unwrap_or(""))
            .map_err(|e| fail(format!("history: {e}")))?;
    if history.numerics != under8k_model::NUMERICS_VERSION {
        return Err(fail(format!(
            "it was trained with the engine's numerics version {}, and this engine computes version {}: the rest would not be the same run (use a fresh --out, or drop --resume)",
            history.numerics,
            under8k_model::NUMERICS_VERSION
        )));
    }
    let all = checkpoint::read_tensors(&path)?;
    let mut model = HashMap::new();
    let mut buffers = BTreeMap::new();
    let mut averages = BTreeMap::new();
    for (k, v) in all {
        if let Some(name) = k.strip_prefix("model.") {
            model.insert(name.to_string(), v);
        } else if let Some(name) = k.strip_prefix("optim.") {
            buffers.insert(name.to_string(), v.to_dtype(net.dtype())?);
        } else if let Some(name) = k.strip_prefix("ema.") {
            averages.insert(name.to_string(), v.to_vec1::<f32>()?);
        }
    }
    checkpoint::load_from(net, &model, &path)?;
    opt.set_buffers(buffers)?;
    if let (Some(ema), Some(c)) = (ema, config.ema) {
        let updates = meta.get("ema_updates").and_then(|n| n.parse().ok());
        let updates = updates.ok_or_else(|| fail("its weight average is missing".into()))?;
        *ema = Ema::restore(c.decay, averages, updates).map_err(ConfigError::from)?;
    }
    Ok(history)
}

/// Trains according to `config` on `mnist` (which must be the data `config.data` names, see
/// [`check_data`]), writing into `out_dir`. With [`Start::Resume`], continues
/// from the state saved there (which must come from the same config). `stop` is polled at every
/// batch boundary: when it is set, the run returns with `interrupted`, keeping the checkpoint of
/// the last completed epoch.
///
/// The run goes on a thread of rayon's pool (this thread waits for it; already on one, it runs
/// here): each step's parallel work is then forked there, rather than handed from this thread
/// to the pool and back at every step. Nothing computed depends on the thread.
pub fn train(
    config: &TrainConfig,
    mnist: &Mnist,
    out_dir: &Path,
    start: Start,
    observer: &mut (dyn Observer + Send),
    stop: &AtomicBool,
) -> Result<Outcome, TrainError> {
    rayon::scope(|_| train_here(config, mnist, out_dir, start, observer, stop))
}

/// [`train`] on the calling thread.
fn train_here(
    config: &TrainConfig,
    mnist: &Mnist,
    out_dir: &Path,
    start: Start,
    observer: &mut (dyn Observer + Send),
    stop: &AtomicBool,
) -> Result<Outcome, TrainError> {
    config.validate()?;
    check_data(config, mnist)?;
    let device = Device::Cpu;
    let files = RunFiles {
        dir: out_dir.to_path_buf(),
    };
    let (train_split, test_split) = config.splits(mnist)?;
    let batches_per_epoch = config.steps_per_epoch(mnist.train.len());
    if let Schedule::OneCycle { total_steps, .. } = config.schedule {
        let steps = config.epochs * batches_per_epoch;
        if total_steps < steps {
            // PyTorch's OneCycleLR raises here too: past its end the rate is undefined.
            return Err(ConfigError::ScheduleTooShort {
                total_steps,
                steps,
                epochs: config.epochs,
                batches: batches_per_epoch,
            }
            .into());
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| CheckpointError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let norm = Normalization::new(config.mean, config.std)?;
    let batch_cfg = batch_config(config)?;
    let (net, mut opt) = fresh(config, &device)?;
    let mut averaging = match config.ema {
        Some(c) => Some(Averaging {
            ema: Ema::new(c.decay).map_err(ConfigError::from)?,
            net: fresh(config, &device)?.0,
            model: c.model,
        }),
        None => None,
    };
    let mut history = History::default();
    if start == Start::Resume && files.state().exists() {
        let ema = averaging.as_mut().map(|a| &mut a.ema);
        history = load_state(&files, config, &net, &mut opt, ema)?;
    }
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    checkpoint::write_atomic(&files.config(), json.as_bytes())?;

    let done = history.epochs.len();
    let mut sched = Scheduler::resume(
        config.schedule.clone(),
        under8k_sched::SchedulerState {
            epoch: done,
            step: done * batches_per_epoch,
        },
    );
    for epoch in done..config.epochs {
        observer.epoch_start(epoch + 1, config.epochs, batches_per_epoch);
        net.set_dropout_rng(stream(config.seed, 1, epoch as u64));
        let epoch_lr = sched.lr();
        let start = Instant::now();
        let (mut seen, mut correct, mut loss_sum) = (0usize, 0usize, 0.0f64);
        let batches = EpochBatches::new(
            &train_split,
            batch_cfg,
            stream(config.seed, 2, epoch as u64),
        )
        .on(&device);
        // The next batch is drawn, augmented and assembled beside this one's step, on the
        // engine's threads: the same batches in the same order, from the same stream.
        let mut batches = Overlapped::new(batches);
        for i in 0.. {
            let Some(batch) = batches.next() else { break };
            if stop.load(Ordering::Relaxed) {
                return Ok(Outcome {
                    history,
                    interrupted: true,
                });
            }
            let batch = batch?;
            opt.set_lr(sched.lr());
            if let Some(m) = sched.momentum() {
                opt.set_momentum(m);
            }
            let Step {
                loss: loss_value,
                hits,
                n,
            } = batches.beside(|| step(&net, &mut opt, &batch, config.label_smoothing))?;
            if !loss_value.is_finite() {
                return Err(TrainError::NonFinite {
                    epoch: epoch + 1,
                    batch: i + 1,
                    loss: loss_value,
                });
            }
            if let Some(a) = averaging.as_mut() {
                a.ema.update_from(&net)?;
            }
            sched.end_step();
            seen += n;
            correct += hits;
            loss_sum += loss_value;
            let running_acc = 100.0 * correct as f64 / seen as f64;
            history.batch_loss.push(loss_value);
            history.batch_acc.push(running_acc);
            let img_per_s = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
            observer.batch(&BatchStats {
                epoch: epoch + 1,
                batch: i + 1,
                batches: batches_per_epoch,
                loss: loss_value,
                running_acc,
                img_per_s,
            });
        }
        sched.end_epoch();
        let train_seconds = start.elapsed().as_secs_f64();
        let eval_start = Instant::now();
        let raw = evaluate(&net, &test_split, norm, config.eval_batch_size, &device)?;
        let (mut raw_test_acc, mut ema_test_acc) = (None, None);
        let (mut eval, mut saved) = (raw, &net);
        if let Some(a) = &averaging {
            checkpoint::load_from(&a.net, &a.ema.state_dict(&net)?, &files.state())?;
            let avg_eval = evaluate(&a.net, &test_split, norm, config.eval_batch_size, &device)?;
            (raw_test_acc, ema_test_acc) = (Some(eval.accuracy()), Some(avg_eval.accuracy()));
            if a.model == EmaModel::Averaged {
                (eval, saved) = (avg_eval, &a.net);
            }
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            lr: epoch_lr,
            train_loss: loss_sum / batches_per_epoch as f64,
            train_acc: 100.0 * correct as f64 / seen.max(1) as f64,
            test_loss: eval.loss,
            test_acc: eval.accuracy(),
            test_correct: eval.correct,
            test_total: eval.total,
            train_seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            train_img_per_s: seen as f64 / train_seconds.max(1e-9),
            raw_test_acc,
            ema_test_acc,
        };
        history.epochs.push(record.clone());
        let state = State {
            net: &net,
            opt: &opt,
            ema: averaging.as_ref().map(|a| &a.ema),
            saved,
        };
        save_state(&files, config, state, &history)?;
        observer.epoch_end(&record);
    }
    Ok(Outcome {
        history,
        interrupted: false,
    })
}

/// The training batches' settings of `config`: shuffled, its rotation, its normalisation.
pub(crate) fn batch_config(config: &TrainConfig) -> Result<BatchConfig, TrainError> {
    let norm = Normalization::new(config.mean, config.std)?;
    let rotation = config
        .rotation_degrees
        .map(RandomRotation::new)
        .transpose()
        .map_err(ConfigError::from)?;
    let affine = config
        .affine
        .map(|a| a.build())
        .transpose()
        .map_err(ConfigError::from)?;
    let erasing = config
        .erasing
        .map(|e| e.build())
        .transpose()
        .map_err(ConfigError::from)?;
    Ok(BatchConfig::new(config.batch_size, true, rotation, norm)?
        .with_affine(affine)
        .with_erasing(erasing))
}

/// A fresh run's net (weights from stream 0 of the seed) and optimizer.
pub(crate) fn fresh(config: &TrainConfig, device: &Device) -> Result<(Net, Opt), TrainError> {
    let net = Net::new(
        &config.arch,
        &mut stream(config.seed, 0, 0),
        stream(config.seed, 1, 0),
        DType::F32,
        device,
    )?
    .with_kernels(config.kernels)?;
    let opt = Opt::new(config, net.named_params())?;
    Ok((net, opt))
}

/// A net of `spec` holding the weights and BatchNorm statistics of the checkpoint at `path`
/// (`model.safetensors` of a run, or a PyTorch `state_dict` file), for evaluation.
pub fn load_net(spec: &under8k_model::ArchSpec, path: &Path) -> Result<Net, TrainError> {
    // Every weight and buffer is then replaced by the checkpoint's: the streams do not matter.
    let net = Net::new(
        spec,
        &mut stream(0, 0, 0),
        stream(0, 1, 0),
        DType::F32,
        &Device::Cpu,
    )?;
    checkpoint::load(&net, path)?;
    Ok(net)
}

/// What one optimizer step measured.
pub(crate) struct Step {
    /// The batch's mean loss.
    pub loss: f64,
    /// Correct predictions in the batch (before the update).
    pub hits: usize,
    /// Images in the batch.
    pub n: usize,
}

/// One SGD step at the optimizer's current rate: forward in training mode, NLL, backward,
/// update. A non-finite loss is returned without updating anything.
/// The training loss on log-probabilities `logp`: NLL, or with label smoothing `smoothing` = ε
/// as `torch.nn.CrossEntropyLoss(label_smoothing=ε)` computes it, (1 − ε)·NLL + ε·(the mean over
/// classes of −log p), both averaged over the batch. With ε = 0 it is NLL itself, the same bits.
pub fn loss(logp: &Tensor, labels: &Tensor, smoothing: f64) -> candle_core::Result<Tensor> {
    let nll = candle_nn::loss::nll(logp, labels)?;
    if smoothing == 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.mean_all()?.neg()?;
    (nll * (1.0 - smoothing))? + (uniform * smoothing)?
}

pub(crate) fn step(
    net: &Net,
    opt: &mut Opt,
    batch: &under8k_mnist_data::batch::Batch,
    smoothing: f64,
) -> Result<Step, TrainError> {
    let logp = net.forward_t(&batch.images, true)?;
    let loss = loss(&logp, &batch.labels, smoothing)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let n = batch.labels.dim(0)?;
    if !value.is_finite() {
        return Ok(Step {
            loss: value,
            hits: 0,
            n,
        });
    }
    opt.step(&loss.backward()?)?;
    let hits = logp
        .argmax(D::Minus1)?
        .eq(&batch.labels)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    Ok(Step {
        loss: value,
        hits: hits as usize,
        n,
    })
}
