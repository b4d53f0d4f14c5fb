//! One error type for the whole crate. Errors are values: a wrong shape, a malformed line
//! of a data file or a corrupt checkpoint is an `Err` naming what was wrong, never a panic.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An op was given tensors whose shapes do not fit together.
    #[error("shape error in {op}: {message}")]
    Shape { op: &'static str, message: String },

    /// A data file is malformed: names the file, the 1-based line and the field.
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },

    /// A data set, checkpoint or config is well-formed but cannot be used as asked.
    #[error("{0}")]
    Invalid(String),

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
