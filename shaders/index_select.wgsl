// Gather along an axis (the embedding lookup), one thread per output element. Tensors are
// seen as `[outer, axis, inner]`; `index` (uploaded from the host, checked < size there) has
// n entries.
//
//   y[o, j, i] = x[o, index[j], i]                 j < n
//
// Backward: `index_add.wgsl`. Consecutive threads copy consecutive columns of one row, so
// reads and writes are coalesced when inner (the embedding width) is ≥ 32. The grid is 2-d
// (`runtime::grid`).

const WG: u32 = 256u;

struct Params {
    // Output elements: outer·n·inner.
    total: u32,
    // Index entries.
    n: u32,
    // Axis length of x.
    size: u32,
    inner: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn index_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= p.total) {
        return;
    }
    let row = e / p.inner;
    let i = e - row * p.inner;
    let o = row / p.n;
    let j = row - o * p.n;
    y[e] = x[(o * p.size + index[j]) * p.inner + i];
}
