//! The GPU GRU kernels (`shaders/gru.wgsl`) against the CPU backend: hidden states, saved
//! gates and every gradient, with and without h0 and a padding mask, on sizes that are not
//! multiples of the tiles (32 hidden units × 16 rows per step workgroup, 64-wide staging of
//! the left operand, 256 rows per column-sum chunk).

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, RecurrentKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tape, Tensor, Var};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

/// A padding mask `[B, L]` with every kind of row: full, left-padded, right-padded, holes.
fn padding_mask(batch: usize, length: usize) -> Tensor {
    let mut m = vec![1.0f32; batch * length];
    for b in 0..batch {
        let row = &mut m[b * length..(b + 1) * length];
        match b % 4 {
            0 => {}
            1 => row[..length / 2].fill(0.0),
            2 => row[length.div_ceil(2)..].fill(0.0),
            _ => row.iter_mut().step_by(2).for_each(|v| *v = 0.0),
        }
    }
    Tensor::from_vec(&[batch, length], m).unwrap()
}

struct Case {
    batch: usize,
    length: usize,
    input: usize,
    hidden: usize,
    with_h0: bool,
    with_mask: bool,
}

fn check(c: &Case, seed: u64) {
    let gpu = gpu_or_skip("gru_matches_the_cpu").expect("checked by the caller");
    let cpu = backend::for_device(Device::Cpu);
    let (b, l, i, h) = (c.batch, c.length, c.input, c.hidden);
    let name = format!("B{b} L{l} I{i} H{h} h0={} mask={}", c.with_h0, c.with_mask);
    let mut rng = Rng::new(seed);
    let x = random(&[b, l, i], &mut rng);
    let h0 = c.with_h0.then(|| random(&[b, h], &mut rng));
    let w_ih = random(&[i, 3 * h], &mut rng);
    let w_hh = random(&[h, 3 * h], &mut rng);
    let b_ih = random(&[3 * h], &mut rng);
    let b_hh = random(&[3 * h], &mut rng);
    let mask = c.with_mask.then(|| padding_mask(b, l));
    let dy = random(&[b, l, h], &mut rng);
    let on_gpu = |t: &Tensor| t.to_device(Device::Gpu);
    let (xg, w_ih_g, w_hh_g, b_ih_g, b_hh_g, dy_g) = (
        on_gpu(&x),
        on_gpu(&w_ih),
        on_gpu(&w_hh),
        on_gpu(&b_ih),
        on_gpu(&b_hh),
        on_gpu(&dy),
    );
    let h0_g = h0.as_ref().map(on_gpu);
    let mask_g = mask.as_ref().map(on_gpu);

    let (hs_c, gates_c) = cpu.gru_forward(
        &x,
        h0.as_ref(),
        &w_ih,
        &w_hh,
        &b_ih,
        &b_hh,
        mask.as_ref(),
        true,
    );
    let (hs_g, gates_g) = gpu.gru_forward(
        &xg,
        h0_g.as_ref(),
        &w_ih_g,
        &w_hh_g,
        &b_ih_g,
        &b_hh_g,
        mask_g.as_ref(),
        true,
    );
    let (gates_c, gates_g) = (gates_c.unwrap(), gates_g.unwrap());
    assert_eq!(hs_g.device(), Device::Gpu);
    assert_eq!(hs_g.shape(), hs_c.shape());
    assert_eq!(gates_g.shape(), gates_c.shape());
    assert_close(
        &format!("{name} hidden"),
        &hs_g.to_vec(),
        &hs_c.to_vec(),
        1e-4,
    );
    assert_close(
        &format!("{name} gates"),
        &gates_g.to_vec(),
        &gates_c.to_vec(),
        1e-4,
    );

    // Without saved gates: the same states and no gates.
    let (hs_n, none) = gpu.gru_forward(
        &xg,
        h0_g.as_ref(),
        &w_ih_g,
        &w_hh_g,
        &b_ih_g,
        &b_hh_g,
        mask_g.as_ref(),
        false,
    );
    assert!(none.is_none(), "{name}: gates not asked for");
    assert_close(
        &format!("{name} hidden (no gates)"),
        &hs_n.to_vec(),
        &hs_c.to_vec(),
        1e-4,
    );

    for want_dx in [true, false] {
        let gc = cpu.gru_backward(
            &x,
            h0.as_ref(),
            &w_ih,
            &w_hh,
            mask.as_ref(),
            &hs_c,
            &gates_c,
            &dy,
            want_dx,
        );
        let gg = gpu.gru_backward(
            &xg,
            h0_g.as_ref(),
            &w_ih_g,
            &w_hh_g,
            mask_g.as_ref(),
            &hs_g,
            &gates_g,
            &dy_g,
            want_dx,
        );
        assert_eq!(gg.dx.is_some(), want_dx, "{name}: dx only when asked");
        if let (Some(a), Some(e)) = (&gg.dx, &gc.dx) {
            assert_eq!(a.shape(), e.shape());
            assert_close(&format!("{name} dx"), &a.to_vec(), &e.to_vec(), 2e-4);
        }
        for (what, a, e) in [
            ("dh0", &gg.dh0, &gc.dh0),
            ("dW_ih", &gg.dw_ih, &gc.dw_ih),
            ("dW_hh", &gg.dw_hh, &gc.dw_hh),
            ("db_ih", &gg.db_ih, &gc.db_ih),
            ("db_hh", &gg.db_hh, &gc.db_hh),
        ] {
            assert_eq!(a.shape(), e.shape(), "{name} {what} shape");
            assert_close(&format!("{name} {what}"), &a.to_vec(), &e.to_vec(), 2e-4);
        }
    }
}

#[test]
fn gru_matches_the_cpu() {
    let Some(_) = gpu_or_skip("gru_matches_the_cpu") else {
        return;
    };
    let mut seed = 1;
    for (batch, length, input, hidden) in [
        (1, 1, 7, 9),
        (3, 5, 7, 9),
        (3, 5, 7, 33),
        (1, 5, 7, 33),
        (3, 1, 7, 33),
    ] {
        for with_h0 in [false, true] {
            for with_mask in [false, true] {
                let c = Case {
                    batch,
                    length,
                    input,
                    hidden,
                    with_h0,
                    with_mask,
                };
                check(&c, seed);
                seed += 1;
            }
        }
    }
}

/// More rows than a step workgroup (16), more hidden units than the 64-wide staging, exact
/// tile multiples (B 16, H 64), and more steps than one column-sum chunk (256).
#[test]
fn gru_matches_the_cpu_across_tiles() {
    let Some(_) = gpu_or_skip("gru_matches_the_cpu_across_tiles") else {
        return;
    };
    for (k, (batch, length, input, hidden)) in [(17, 3, 7, 70), (16, 2, 3, 64), (21, 13, 5, 9)]
        .into_iter()
        .enumerate()
    {
        let c = Case {
            batch,
            length,
            input,
            hidden,
            with_h0: true,
            with_mask: true,
        };
        check(&c, 100 + k as u64);
    }
}

/// Through the tape: `Tape::gru` on a GPU tape gives the CPU tape's output and gradients,
/// also when x needs no gradient (the backward is then asked for no dx).
#[test]
fn gru_op_on_a_gpu_tape_matches_the_cpu_tape() {
    let Some(_) = gpu_or_skip("gru_op_on_a_gpu_tape_matches_the_cpu_tape") else {
        return;
    };
    let (b, l, i, h) = (3, 5, 7, 9);
    let mut rng = Rng::new(42);
    let x = random(&[b, l, i], &mut rng);
    let h0 = random(&[b, h], &mut rng);
    let weights = [
        random(&[i, 3 * h], &mut rng),
        random(&[h, 3 * h], &mut rng),
        random(&[3 * h], &mut rng),
        random(&[3 * h], &mut rng),
    ];
    let dy = random(&[b, l, h], &mut rng);
    for x_needs_grad in [true, false] {
        let run = |device: Device| {
            let mut tape = Tape::new().on(device);
            let xv = if x_needs_grad {
                tape.leaf(x.clone())
            } else {
                tape.constant(x.clone())
            };
            let h0v = tape.leaf(h0.clone());
            let w: Vec<Var> = weights.iter().map(|t| tape.leaf(t.clone())).collect();
            let mask = padding_mask(b, l).to_device(device);
            let y = tape
                .gru(xv, Some(h0v), w[0], w[1], w[2], w[3], Some(&mask))
                .unwrap();
            let grads = tape.backward_with(y, dy.clone()).unwrap();
            let mut vars = vec![h0v];
            vars.extend(&w);
            if x_needs_grad {
                vars.push(xv);
            }
            let mut out = vec![tape.value(y).to_vec()];
            out.extend(vars.iter().map(|&v| grads.get(v).unwrap().to_vec()));
            out
        };
        let (on_gpu, on_cpu) = (run(Device::Gpu), run(Device::Cpu));
        assert_eq!(on_gpu.len(), on_cpu.len());
        for (k, (a, e)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            assert_close(&format!("tape gru value {k}"), a, e, 2e-4);
        }
    }
}
