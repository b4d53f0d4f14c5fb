// SGD with heavy-ball momentum and L2 weight decay, one thread per element, in place:
//
//   velocity ← μ·velocity + g + λ·θ
//   θ ← θ − lr·velocity

const WG: u32 = 256u;

struct Params {
    n: u32,
    lr: f32,
    momentum: f32,
    decay: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let t = theta[i];
    let vel = p.momentum * velocity[i] + grad[i] + p.decay * t;
    velocity[i] = vel;
    theta[i] = t - p.lr * vel;
}
