// Inverted dropout with the counter-based RNG of `src/rng.rs`, bit-exact with the CPU kernel.
//
//   bits_i = hash32(i ^ key) >> 8            (key = stream_key(stream), hashed on the host)
//   y_i    = 0               if bits_i < threshold   (threshold = ⌈p·2²⁴⌉, i.e. u_i < p)
//          = x_i·scale       otherwise               (scale = 1/(1 − p), rounded on the host)
//
// The backward is the same map applied to dy (the mask is recomputed, never stored).
// One thread per element; the grid is 2-d (`runtime::grid`) so that more than 65 535
// workgroups fit.

const WG: u32 = 256u;

struct Params {
    n: u32,
    key: u32,
    threshold: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Wellons' "lowbias32" integer hash, as `rng::hash32` (u32 multiplication wraps in WGSL).
fn hash32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let bits = hash32(i ^ p.key) >> 8u;
    y[i] = select(x[i] * p.scale, 0.0, bits < p.threshold);
}
