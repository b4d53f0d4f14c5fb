// Concatenation along an axis: one dispatch per input, each thread copying one element of
// that input into its block of the output. Tensors are seen as `[outer, axis, inner]`; input
// k has axis length a_k and starts at position s_k = a_0 + … + a_{k−1} of the output axis.
//
//   y[o, s_k + j, i] = x_k[o, j, i]
//
// Backward is `slice` of dy per input. Reads are contiguous; writes are contiguous runs of
// a_k·inner elements. The grid is 2-d (`runtime::grid`).

const WG: u32 = 256u;

struct Params {
    // Elements of this input.
    n: u32,
    // a_k·inner: elements per outer row of this input.
    part: u32,
    // (Σ a)·inner: elements per outer row of the output.
    out_row: u32,
    // s_k·inner.
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn concat(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n) {
        return;
    }
    let o = e / p.part;
    let r = e - o * p.part;
    y[o * p.out_row + p.offset + r] = x[e];
}
