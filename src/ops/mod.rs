//! Differentiable ops, as methods of `Tape`. Each file holds one family; inside it each op's
//! forward and its `Backward` sit side by side. Forward validates shapes and returns `Err`
//! on a mismatch; the kernels it calls (through the `Backend`) assume valid shapes.

mod activation;
mod arithmetic;
mod attention;
mod conv;
mod ffn;
mod gru;
mod loss;
mod matmul;
mod nn;
mod reduce;
mod shape;

pub use arithmetic::broadcast_shape;
pub use ffn::Activation;
