// Scatter-add along an axis (the backward of `index_select`: the embedding gradient), as a
// segmented sum without atomics (WGSL has no float atomics). Tensors are seen as
// `[outer, axis, inner]`; dy has `count` entries along the axis, the output `size`.
//
//   dx[o, t, i] = Σ_{j : index[j] = t} dy[o, j, i]       (0 when no j; with skip_zero, t = 0
//                                                          gets 0)
//
// The host groups the positions j by target t (a stable counting sort, so the j of one target
// stay in increasing order) into CSR form: `positions` lists them target after target and
// target t's segment is positions[starts[t] .. starts[t + 1]]. With skip_zero the host leaves
// target 0's segment empty. One thread per output element (o, t, i) sums its segment in order
// from 0, the same order as the CPU kernel: deterministic and bit-equal to it. Consecutive
// threads are consecutive columns of one row, so the reads of dy rows are coalesced. The
// grid is 2-d (`runtime::grid`).

const WG: u32 = 256u;

struct Params {
    // Output elements: outer·size·inner.
    total: u32,
    // dy's axis length.
    count: u32,
    // Output axis length.
    size: u32,
    inner: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> starts: array<u32>;
@group(0) @binding(3) var<storage, read> positions: array<u32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn index_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.total) {
        return;
    }
    let row = e / p.inner;
    let i = e - row * p.inner;
    let o = row / p.size;
    let t = row - o * p.size;
    let base = o * p.count;
    var acc = 0.0;
    for (var k = starts[t]; k < starts[t + 1u]; k++) {
        acc += dy[(base + positions[k]) * p.inner + i];
    }
    dx[e] = acc;
}
