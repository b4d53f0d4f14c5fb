//! Fused attention cases for the JSON kernel benchmark: batch 128, width 64, causal, heads 1
//! and 2, L = 50 and 200, forward (inference tape) and forward + backward (gradient of ones).
//! FLOPs follow `torch_micro.py`: 4·B·L²·D for the forward (not halved for causality), three
//! times that for forward + backward.

use seqrec::rng::Rng;
use seqrec::{Tape, Tensor};

use crate::Case;

const BATCH: usize = 128;
const WIDTH: usize = 64;

fn random_inputs(len: usize) -> [Tensor; 3] {
    let mut rng = Rng::new(len as u64);
    let n = BATCH * len * WIDTH;
    [0, 1, 2].map(|_| {
        let values = (0..n).map(|_| rng.normal()).collect();
        Tensor::from_vec(&[BATCH, len, WIDTH], values)
            .expect("shape matches")
            .to_device(crate::device())
    })
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for heads in [1, 2] {
        for len in [50, 200] {
            let forward_flops = 4.0 * (BATCH * len * len * WIDTH) as f64;
            let inputs = random_inputs(len);
            cases.push(Case {
                name: format!("attention_fwd_h{heads}_L{len}"),
                flops: Some(forward_flops),
                run: Box::new(move || {
                    let mut tape = Tape::inference().on(crate::device());
                    let [q, k, v] = [0, 1, 2].map(|n| tape.constant(inputs[n].clone()));
                    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
                    std::hint::black_box(tape.value(y));
                }),
            });
            let inputs = random_inputs(len);
            let ones = Tensor::full(&[BATCH, len, WIDTH], 1.0).to_device(crate::device());
            cases.push(Case {
                name: format!("attention_fwdbwd_h{heads}_L{len}"),
                flops: Some(3.0 * forward_flops),
                run: Box::new(move || {
                    let mut tape = Tape::new().on(crate::device());
                    let [q, k, v] = [0, 1, 2].map(|n| tape.leaf(inputs[n].clone()));
                    let y = tape.attention(q, k, v, heads, true, None, 0.0).unwrap();
                    let grads = tape.backward_with(y, ones.clone()).unwrap();
                    std::hint::black_box(grads.get(q));
                }),
            });
        }
    }
    cases
}
