//! The fused GRU layer on the GPU.

use super::{CPU, GpuBackend, host};
use crate::backend::{GruGradients, RecurrentKernels};
use crate::tensor::Tensor;

impl RecurrentKernels for GpuBackend {
    fn gru_forward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        b_ih: &Tensor,
        b_hh: &Tensor,
        mask: Option<&Tensor>,
        save_gates: bool,
    ) -> (Tensor, Option<Tensor>) {
        let h0 = h0.map(host);
        let mask = mask.map(host);
        let (hidden, gates) = CPU.gru_forward(
            &host(x),
            h0.as_ref(),
            &host(w_ih),
            &host(w_hh),
            &host(b_ih),
            &host(b_hh),
            mask.as_ref(),
            save_gates,
        );
        (
            self.upload_tensor(hidden),
            gates.map(|g| self.upload_tensor(g)),
        )
    }

    fn gru_backward(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        w_ih: &Tensor,
        w_hh: &Tensor,
        mask: Option<&Tensor>,
        hidden: &Tensor,
        gates: &Tensor,
        d_hidden: &Tensor,
        want_dx: bool,
    ) -> GruGradients {
        let h0 = h0.map(host);
        let mask = mask.map(host);
        let g = CPU.gru_backward(
            &host(x),
            h0.as_ref(),
            &host(w_ih),
            &host(w_hh),
            mask.as_ref(),
            &host(hidden),
            &host(gates),
            &host(d_hidden),
            want_dx,
        );
        GruGradients {
            dx: g.dx.map(|t| self.upload_tensor(t)),
            dh0: self.upload_tensor(g.dh0),
            dw_ih: self.upload_tensor(g.dw_ih),
            dw_hh: self.upload_tensor(g.dw_hh),
            db_ih: self.upload_tensor(g.db_ih),
            db_hh: self.upload_tensor(g.db_hh),
        }
    }
}
