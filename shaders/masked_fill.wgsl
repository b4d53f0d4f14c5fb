// Masked fill with the mask broadcast to x, one thread per element:
//
//   y[e] = value if mask[offset(e)] ≠ 0, else x[e]
//
// Backward: the same kernel with value 0 applied to dy. The host collapses x's shape and the
// mask's broadcast strides (stride 0 on broadcast axes) to at most 4 axes d0..d3 (merging
// axes that are contiguous in both), so offset(e) = Σ_a coord_a(e)·stride_a. x and y are
// read and written contiguously. The grid is 2-d (`runtime::grid`).

const WG: u32 = 256u;

struct Params {
    n: u32,
    // The sizes of axes 1..3 (axis 0's is implied by n).
    d1: u32,
    d2: u32,
    d3: u32,
    // The mask's stride along each axis (0 where broadcast).
    s0: u32,
    s1: u32,
    s2: u32,
    s3: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn masked_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n) {
        return;
    }
    var r = e;
    let i3 = r % p.d3;
    r /= p.d3;
    let i2 = r % p.d2;
    r /= p.d2;
    let i1 = r % p.d1;
    let i0 = r / p.d1;
    let m = mask[i0 * p.s0 + i1 * p.s1 + i2 * p.s2 + i3 * p.s3];
    y[e] = select(x[e], p.value, m != 0.0);
}
