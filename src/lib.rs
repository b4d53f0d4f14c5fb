//! seqrec: sequential recommendation in Rust, from the kernels up.
//!
//! - `tensor`: f32 tensors and id tensors; `backend`: the kernels, per device;
//! - `autograd`: the tape; `ops`: differentiable ops, each forward beside its backward;
//! - `optim`: named parameters and optimizers.

pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod models;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;
pub mod train;

pub use autograd::{Tape, Var};
pub use error::{Error, Result};
pub use tensor::{Device, Ids, Tensor};
