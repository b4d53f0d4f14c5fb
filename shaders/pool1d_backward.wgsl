// The backward of `pool1d.wgsl`: dy [rows, LO] → dx [rows, L]. A gather, one thread per input
// element i, over the windows that contain it: t from ⌊(i − k)/s⌋ + 1 (0 when i < k) to
// min(⌊i/s⌋, LO − 1), in increasing t (the CPU's order of accumulation):
//
// `pool_backward_max`: dx[r, i] = Σ_t dy[r, t] where argmax[r, t] = i.
// `pool_backward_avg`: dx[r, i] = Σ_t dy[r, t] / k.
//
// Grid: `runtime::grid(rows·L, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

struct Params {
    n: u32,
    len: u32,
    out_len: u32,
    kernel: u32,
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
// pool_backward_max only.
@group(0) @binding(3) var<storage, read> argmax: array<u32>;

// The windows [first, last] that contain position i (empty when first > last).
fn windows(i: u32) -> vec2<u32> {
    var first = 0u;
    if (i >= p.kernel) {
        first = (i - p.kernel) / p.stride + 1u;
    }
    let last = min(i / p.stride, p.out_len - 1u);
    return vec2<u32>(first, last);
}

@compute @workgroup_size(WG)
fn pool_backward_max(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.n) {
        return;
    }
    let i = t % p.len;
    let row = (t / p.len) * p.out_len;
    let w = windows(i);
    var acc = 0.0;
    for (var s = w.x; s <= w.y; s++) {
        if (argmax[row + s] == i) {
            acc += dy[row + s];
        }
    }
    dx[t] = acc;
}

@compute @workgroup_size(WG)
fn pool_backward_avg(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.n) {
        return;
    }
    let i = t % p.len;
    let row = (t / p.len) * p.out_len;
    let w = windows(i);
    let k = f32(p.kernel);
    var acc = 0.0;
    for (var s = w.x; s <= w.y; s++) {
        acc += dy[row + s] / k;
    }
    dx[t] = acc;
}
