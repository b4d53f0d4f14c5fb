//! Reverse-mode automatic differentiation.
//!
//! A `Tape` records every op in execution order: its output value, its inputs and the
//! `Backward` that maps the output's gradient to the inputs' gradients. `Tape::backward`
//! walks the records in reverse, so no topological sort is needed, and adds up gradients
//! where a value was used more than once.
//!
//! `Tape::record` takes the backward as a required argument and `Backward` has no default
//! method: an op without a backward does not compile.

mod tape;

pub use tape::{Backward, BackwardContext, Gradients, Tape, Var};
