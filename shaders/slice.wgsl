// Slice along an axis and its backward, one thread per output element. A tensor is seen as
// `[outer, axis, inner]`; with the axis and inner sizes folded into row lengths the
// index math is one division per element.
//
//   slice:   y[o, j, i] = x[o, start + j, i]                      j < len
//   unslice: dx[o, j, i] = dy[o, j − start, i] if start ≤ j < start + len, else 0   j < full
//
// unslice writes the zeros itself, so its output needs no separate clear. Reads and writes
// are contiguous runs of len·inner elements (coalesced). The grid is 2-d (`runtime::grid`).

const WG: u32 = 256u;

struct Params {
    // Output elements.
    n: u32,
    // Elements per outer row of the output and of the input.
    out_row: u32,
    in_row: u32,
    // start·inner.
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn slice(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n) {
        return;
    }
    let o = e / p.out_row;
    let r = e - o * p.out_row;
    y[e] = x[o * p.in_row + p.offset + r];
}

// Here out_row = full·inner, in_row = len·inner.
@compute @workgroup_size(WG)
fn unslice(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.n) {
        return;
    }
    let o = e / p.out_row;
    let r = e - o * p.out_row;
    var v = 0.0;
    if (r >= p.offset && r - p.offset < p.in_row) {
        v = x[o * p.in_row + r - p.offset];
    }
    y[e] = v;
}
