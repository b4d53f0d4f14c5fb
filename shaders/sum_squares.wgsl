// Σ x² over a whole buffer, by one workgroup: each thread sums a strided share, then a tree
// reduction in workgroup memory. Used once per parameter for gradient clipping, where a
// single dispatch beats a multi-pass reduction.
//
//   out[0] = Σ_i x_i²

const WG: u32 = 256u;

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn sum_squares(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += x[i] * x[i];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[0] = partial[0];
    }
}
