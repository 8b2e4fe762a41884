//! What a run measured: per-epoch records and per-batch curves, saved as JSON and CSV.

use serde::{Deserialize, Serialize};

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used during the epoch (its first step, for per-step schedules).
    pub lr: f64,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch (%), as the running accuracy the seed prints.
    pub train_acc: f64,
    /// Test loss: sum-reduced NLL / N.
    pub test_loss: f64,
    /// Test accuracy (%).
    pub test_acc: f64,
    /// Correct test predictions.
    pub test_correct: usize,
    /// Test images.
    pub test_total: usize,
    /// Wall time of the training part of the epoch, seconds.
    pub train_seconds: f64,
    /// Wall time of the evaluation, seconds.
    pub eval_seconds: f64,
    /// Training throughput, images per second.
    pub train_img_per_s: f64,
    /// With weight averaging (`TrainConfig::ema`): the trained model's own test accuracy (%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_test_acc: Option<f64>,
    /// With weight averaging: the averaged model's test accuracy (%). `test_acc` is the one of
    /// these the config chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_test_acc: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per completed epoch.
    pub epochs: Vec<EpochRecord>,
    /// Loss of every training batch, in order.
    pub batch_loss: Vec<f64>,
    /// Running training accuracy (%) after every batch, within its epoch.
    pub batch_acc: Vec<f64>,
    /// The engine's numerics version the run was trained with (`under8k_model::NUMERICS_VERSION`;
    /// absent, and 1, in runs trained before versions were recorded).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub numerics: u32,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

impl Default for History {
    /// An empty history of this engine's numerics.
    fn default() -> Self {
        Self {
            epochs: vec![],
            batch_loss: vec![],
            batch_acc: vec![],
            numerics: under8k_model::NUMERICS_VERSION,
        }
    }
}

impl History {
    /// The per-epoch records as CSV.
    pub fn to_csv(&self) -> String {
        // Runs without weight averaging keep the columns they always had.
        let averaged = self.epochs.iter().any(|e| e.ema_test_acc.is_some());
        let mut s = String::from(
            "epoch,lr,train_loss,train_acc,test_loss,test_acc,test_correct,test_total,train_seconds,eval_seconds,train_img_per_s",
        );
        s += if averaged {
            ",raw_test_acc,ema_test_acc\n"
        } else {
            "\n"
        };
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for e in &self.epochs {
            s += &format!(
                "{},{},{},{},{},{},{},{},{:.3},{:.3},{:.1}",
                e.epoch,
                e.lr,
                e.train_loss,
                e.train_acc,
                e.test_loss,
                e.test_acc,
                e.test_correct,
                e.test_total,
                e.train_seconds,
                e.eval_seconds,
                e.train_img_per_s
            );
            if averaged {
                s += &format!(",{},{}", opt(e.raw_test_acc), opt(e.ema_test_acc));
            }
            s += "\n";
        }
        s
    }

    /// The best test accuracy so far.
    pub fn max_test_acc(&self) -> Option<f64> {
        self.epochs.iter().map(|e| e.test_acc).reduce(f64::max)
    }
}
