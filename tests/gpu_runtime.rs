//! The GPU runtime: buffers round-trip, the optimizer kernels match the CPU, and a model
//! trains on the GPU with no code change, following the CPU's losses.

mod common;

use common::{assert_close, gpu_or_skip};
use seqrec::backend::{self, AdamStep, OptimizerKernels};
use seqrec::rng::Rng;
use seqrec::{Device, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()).unwrap()
}

#[test]
fn values_round_trip_through_the_gpu() {
    let Some(_) = gpu_or_skip("values_round_trip_through_the_gpu") else {
        return;
    };
    let mut rng = Rng::new(1);
    for n in [1usize, 7, 256, 1000, 70_001] {
        let t = random(&[n], &mut rng);
        let g = t.to_device(Device::Gpu);
        assert_eq!(g.device(), Device::Gpu);
        assert_eq!(g.to_vec(), t.to_vec());
        assert_eq!(g.to_device(Device::Cpu).to_vec(), t.to_vec());
    }
}

#[test]
fn adam_sgd_and_sum_squares_match_the_cpu() {
    let Some(gpu) = gpu_or_skip("adam_sgd_and_sum_squares_match_the_cpu") else {
        return;
    };
    let cpu = backend::for_device(Device::Cpu);
    let mut rng = Rng::new(2);
    for n in [1usize, 255, 257, 5000] {
        let step = AdamStep {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            step_size: 1e-2,
            bias2: 0.02,
            decay: 1e-3,
        };
        let mut theta_c = random(&[n], &mut rng);
        let (mut m_c, mut v_c) = (Tensor::zeros(&[n]), Tensor::zeros(&[n]));
        let mut theta_g = theta_c.to_device(Device::Gpu);
        let (mut m_g, mut v_g) = (m_c.to_device(Device::Gpu), v_c.to_device(Device::Gpu));
        for _ in 0..3 {
            let grad = random(&[n], &mut rng);
            cpu.adam_update(&mut theta_c, &mut m_c, &mut v_c, &grad, &step);
            gpu.adam_update(&mut theta_g, &mut m_g, &mut v_g, &grad, &step);
        }
        assert_close("adam θ", &theta_g.to_vec(), &theta_c.to_vec(), 1e-5);
        assert_close("adam v", &v_g.to_vec(), &v_c.to_vec(), 1e-5);

        let mut vel_c = Tensor::zeros(&[n]);
        let mut vel_g = vel_c.to_device(Device::Gpu);
        for _ in 0..2 {
            let grad = random(&[n], &mut rng);
            cpu.sgd_update(&mut theta_c, &mut vel_c, &grad, 0.1, 0.9, 1e-2);
            gpu.sgd_update(&mut theta_g, &mut vel_g, &grad, 0.1, 0.9, 1e-2);
        }
        assert_close("sgd θ", &theta_g.to_vec(), &theta_c.to_vec(), 1e-5);
        let ss_c = cpu.sum_squares(&theta_c).item();
        let ss_g = gpu.sum_squares(&theta_g).item();
        assert_close("sum of squares", &[ss_g], &[ss_c], 1e-5);
    }
}

#[test]
fn an_update_in_place_leaves_sharing_tensors_alone() {
    let Some(gpu) = gpu_or_skip("an_update_in_place_leaves_sharing_tensors_alone") else {
        return;
    };
    let theta = Tensor::from_vec(&[3], vec![1.0, 2.0, 3.0])
        .unwrap()
        .to_device(Device::Gpu);
    let snapshot = theta.clone();
    let (mut t, mut vel) = (theta, Tensor::zeros(&[3]).to_device(Device::Gpu));
    let grad = Tensor::full(&[3], 1.0);
    gpu.sgd_update(&mut t, &mut vel, &grad, 0.5, 0.0, 0.0);
    assert_eq!(t.to_vec(), vec![0.5, 1.5, 2.5]);
    assert_eq!(snapshot.to_vec(), vec![1.0, 2.0, 3.0]);
}
