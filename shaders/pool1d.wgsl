// 1-d pooling over the last axis, forward: x [rows, L] → y [rows, LO], LO = (L − k)/s + 1,
// window t = [t·s, t·s + k). One thread per output element.
//
// `pool_max`: y[r, t] = max of the window, argmax[r, t] = t·s + (first index of the max)
//   (strict > from −∞, so the first wins on ties, as on the CPU).
// `pool_avg`: y[r, t] = (Σ of the window, left to right) / k.
//
// The backward is `pool1d_backward.wgsl`.
// Grid: `runtime::grid(rows·LO, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

struct Params {
    n: u32,
    len: u32,
    out_len: u32,
    kernel: u32,
    stride: u32,
    // −∞ (a WGSL constant may not be infinite).
    neg_inf: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// pool_max only.
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

@compute @workgroup_size(WG)
fn pool_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let start = (i % p.out_len) * p.stride;
    let base = (i / p.out_len) * p.len + start;
    var best = p.neg_inf;
    var at = 0u;
    for (var j = 0u; j < p.kernel; j++) {
        let v = x[base + j];
        if (v > best) {
            best = v;
            at = j;
        }
    }
    y[i] = best;
    argmax[i] = start + at;
}

@compute @workgroup_size(WG)
fn pool_avg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let base = (i / p.out_len) * p.len + (i % p.out_len) * p.stride;
    var acc = 0.0;
    for (var j = 0u; j < p.kernel; j++) {
        acc += x[base + j];
    }
    y[i] = acc / f32(p.kernel);
}
