// Permutation of axes, as a gather indexed by the output: y[e] = x[offset(e)].
//
// The host computes, for each output axis, its size and its stride in x, drops size-1 axes
// and merges neighbours that stay contiguous (stride_a = stride_{a+1}·size_{a+1}), leaving at
// most 4 axes d0..d3 with input strides s0..s3:
//
//   offset(i0, i1, i2, i3) = i0·s0 + i1·s1 + i2·s2 + i3·s3
//
// Backward: the inverse permutation, through the same kernel.
//
// Two entry points:
// - `gather`: one thread per output element. Used when the last output axis is also x's
//   contiguous axis (s3 = 1), so reads and writes are both coalesced.
// - `transpose_tiles`: when x's contiguous axis is another output axis q (a transpose), a
//   TILE×TILE tile of the (q, 3) plane goes through workgroup memory: it is loaded with
//   consecutive threads along q (contiguous in x) and stored with consecutive threads along
//   axis 3 (contiguous in y). The host passes the axes in the order (a, b, q, 3), a and b
//   being the other two (batch) axes; workgroups are (tiles of axis 3, tiles of q, batch)
//   and loop over the batch when it exceeds the grid. 32×8 threads, 4 rows each; the tile
//   row is padded to TILE + 1 floats so the column reads hit distinct banks.

const WG: u32 = 256u;
const TILE: u32 = 32u;
const ROWS: u32 = 8u;

struct Params {
    // gather: output elements; transpose_tiles: the batch size da·db.
    n: u32,
    // Output axes 1..3 (gather: axis 0's size is implied by n). transpose_tiles: (db, dq, d3).
    d1: u32,
    d2: u32,
    d3: u32,
    // Input strides of the output axes. transpose_tiles: (sa, sb, 1, s3).
    s0: u32,
    s1: u32,
    s2: u32,
    s3: u32,
    // transpose_tiles only: output strides of axes a, b and q (axis 3's is 1).
    oa: u32,
    ob: u32,
    oq: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    y[e] = x[i0 * p.s0 + i1 * p.s1 + i2 * p.s2 + i3 * p.s3];
}

var<workgroup> tile: array<f32, TILE * (TILE + 1u)>;

@compute @workgroup_size(TILE, ROWS)
fn transpose_tiles(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) tid: vec3<u32>) {
    let db = p.d1;
    let dq = p.d2;
    let d3 = p.d3;
    let q0 = wid.y * TILE;
    let c0 = wid.x * TILE;
    for (var b = wid.z; b < p.n; b += nwg.z) {
        let ia = b / db;
        let ib = b - ia * db;
        let in_base = ia * p.s0 + ib * p.s1;
        let out_base = ia * p.oa + ib * p.ob;
        // Load: thread x walks q (contiguous in x), the rows walk axis 3.
        let q = q0 + tid.x;
        for (var k = 0u; k < TILE; k += ROWS) {
            let c = c0 + tid.y + k;
            if (q < dq && c < d3) {
                tile[(tid.y + k) * (TILE + 1u) + tid.x] = x[in_base + q + c * p.s3];
            }
        }
        workgroupBarrier();
        // Store: thread x walks axis 3 (contiguous in y), the rows walk q.
        let c = c0 + tid.x;
        for (var k = 0u; k < TILE; k += ROWS) {
            let qq = q0 + tid.y + k;
            if (qq < dq && c < d3) {
                y[out_base + qq * p.oq + c] = tile[tid.x * (TILE + 1u) + tid.y + k];
            }
        }
        workgroupBarrier();
    }
}
