// Binary cross-entropy with logits, elementwise over x, labels y and weights ω (ω = 0 marks
// padding), forward reduced to a rank-0 loss on the GPU, and the backward:
//
//   ℓ_i  = max(x_i, 0) − x_i·y_i + ln(1 + e^{−|x_i|})       (0 where ω_i = 0)
//   L    = Σ_i ω_i·ℓ_i · inv_total                          (inv_total = 1/Σω, 0 when Σω = 0)
//   dx_i = ω_i · (dloss/Σω) · (σ(x_i) − y_i)                 (0 when Σω = 0)
//
// dloss is read from a one-element GPU buffer, so the backward needs no readback.
// The forward is two deterministic passes (no atomics):
//   `bce_partials`: workgroup g adds the terms of elements [g·CHUNK, (g+1)·CHUNK) — each thread
//     ITEMS of them, WG apart (coalesced) — then a tree in workgroup memory → partials[g];
//   `bce_total`: one workgroup adds the partials in a fixed order, times inv_total.
// `bce_backward`: one thread per element. Grids are 2-d (`runtime::grid`).

const WG: u32 = 256u;
const ITEMS: u32 = 8u;
const CHUNK: u32 = 2048u;

struct Params {
    n: u32,
    // inv_total for `bce_total`; Σω for `bce_backward`.
    total: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

fn tree_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red[lid] += red[lid + stride];
        }
        workgroupBarrier();
    }
    return red[0];
}

// ln(1 + e) accurate for small e (WGSL has no log1p): ln(u)·e/(u − 1) with u = 1 + e
// cancels the rounding of u (Goldberg 1991, Theorem 4).
fn log1p(e: f32) -> f32 {
    let u = 1.0 + e;
    if (u == 1.0) {
        return e;
    }
    return log(u) * e / (u - 1.0);
}

// ---- forward, pass 1 ----

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
// partials for `bce_partials`, dx for `bce_backward`.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn bce_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    for (var k = 0u; k < ITEMS; k++) {
        let i = group * CHUNK + k * WG + lid;
        if (i < p.n) {
            let w = weights[i];
            let v = x[i];
            let term = max(v, 0.0) - v * labels[i] + log1p(exp(-abs(v)));
            acc += select(w * term, 0.0, w == 0.0);
        }
    }
    let total = tree_sum(acc, lid);
    if (lid == 0u) {
        out[group] = total;
    }
}

// ---- backward ----

@group(0) @binding(5) var<storage, read> dloss: array<f32>;

fn sigmoid(v: f32) -> f32 {
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

@compute @workgroup_size(WG)
fn bce_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let scale = select(dloss[0] / p.total, 0.0, p.total == 0.0);
    out[i] = weights[i] * scale * (sigmoid(x[i]) - labels[i]);
}

// ---- forward, pass 2 ----

@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WG)
fn bce_total(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += partials[i];
    }
    let total = tree_sum(acc, lid);
    if (lid == 0u) {
        loss[0] = total * p.total;
    }
}
