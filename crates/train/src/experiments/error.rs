//! The experiments' one error type, and the two helpers that keep call sites short: a
//! [`Context`] trait (a message in front of an error, as `anyhow` has it, but typed) and
//! [`refuse!`](crate::refuse), the refusal of bad input in words.

use std::path::PathBuf;

use crate::data::PrepareError;
use crate::run::TrainError;

/// What can stop an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The input (a manifest, a goal, a candidate, an option) cannot be used: the message says
    /// which file or option and why.
    #[error("{0}")]
    Refused(String),
    /// A file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another error, with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The error.
        source: Box<ExperimentError>,
    },
    /// Reading or writing a file without a path at hand.
    #[error(transparent)]
    IoBare(#[from] std::io::Error),
    /// JSON that does not parse as what it should be.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A config is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The data cannot be prepared.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// A net or checkpoint problem.
    #[error(transparent)]
    Model(#[from] under8k_model::ModelError),
    /// Writing a checkpoint or a picture.
    #[error(transparent)]
    Checkpoint(#[from] under8k_model::checkpoint::CheckpointError),
    /// An architecture spec is invalid.
    #[error(transparent)]
    Spec(#[from] under8k_model::SpecError),
    /// Encoding a picture.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// Drawing a picture.
    #[error(transparent)]
    Plot(#[from] crate::plots::PlotError),
    /// The range test.
    #[error(transparent)]
    LrFind(#[from] crate::lr_find::LrFindError),
    /// The range test could not run.
    #[error(transparent)]
    RangeTest(#[from] crate::lr_find::RangeTestError),
    /// Formatting a report (never happens when writing to a `String`).
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
}

/// `Result` with [`ExperimentError`].
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

/// Puts what was being done in front of an error.
pub trait Context<T> {
    /// With a fixed message.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// With a message made only on failure.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<ExperimentError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.with_context(|| context)
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| ExperimentError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| ExperimentError::Refused(context.into()))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| ExperimentError::Refused(f().into()))
    }
}

/// An I/O error with its file.
pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let path = path.into();
    move |source| ExperimentError::Io { path, source }
}

/// Returns an [`ExperimentError::Refused`] with a formatted message.
#[macro_export]
#[doc(hidden)]
macro_rules! refuse {
    ($($t:tt)*) => {
        return Err($crate::experiments::ExperimentError::Refused(format!($($t)*)))
    };
}

/// Refuses unless a condition holds.
#[macro_export]
#[doc(hidden)]
macro_rules! refuse_unless {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::refuse!($($t)*);
        }
    };
}
