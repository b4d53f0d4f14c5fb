// Adam / AdamW update, one thread per parameter element (Kingma & Ba 2015; decoupled weight
// decay: Loshchilov & Hutter 2019).
//
//   m ← β₁·m + (1 − β₁)·g
//   v ← β₂·v + (1 − β₂)·g²
//   θ ← θ − step_size · m / (√(v / bias2) + ε) − decay · θ
//
// with step_size = lr / (1 − β₁ᵗ), bias2 = 1 − β₂ᵗ and decay = lr·λ (0 when exempt), folded
// in on the host. θ, m and v are updated in place. The grid is 2-d (`runtime::grid`) so that
// more than 65 535 workgroups fit.

const WG: u32 = 256u;

struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bias2: f32,
    decay: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let t = theta[i];
    theta[i] = t - p.step_size * mi / (sqrt(vi / p.bias2) + p.eps) - p.decay * t;
}
