// Column sums of a row-major [rows, cols] matrix: the FFN's bias gradients
//
//   db[j] = Σ_i dz[i, j]        (db1 from da, db2 from dy)
//
// in two passes. `column_sums`: workgroup (x, y) sums columns 64x .. 64x + 63 over the rows of
// chunk y (chunk_rows rows): 256 threads = 64 columns × 4 lanes, each lane a strided share of
// the rows (a warp reads consecutive columns of one row: coalesced), then the 4 lanes are
// added in workgroup memory; the result is partial[y, j]. `sum_chunks`: db[j] = Σ_y partial[y, j],
// one thread per column. With one chunk the first pass writes db directly.

const COLS: u32 = 64u;
const LANES: u32 = 4u;
const WG: u32 = 256u;

struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> lane_sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn column_sums(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let col = wid.x * COLS + lid % COLS;
    let lane = lid / COLS;
    let first = wid.y * p.chunk_rows;
    let last = min(p.rows, first + p.chunk_rows);
    var sum = 0.0;
    if (col < p.cols) {
        for (var r = first + lane; r < last; r += LANES) {
            sum += x[r * p.cols + col];
        }
    }
    lane_sums[lid] = sum;
    workgroupBarrier();
    if (lane == 0u && col < p.cols) {
        let total = lane_sums[lid] + lane_sums[lid + COLS] + lane_sums[lid + 2u * COLS]
            + lane_sums[lid + 3u * COLS];
        out[wid.y * p.cols + col] = total;
    }
}

@compute @workgroup_size(WG)
fn sum_chunks(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let col = wid.x * WG + lid;
    if (col >= p.cols) {
        return;
    }
    var sum = 0.0;
    for (var y = 0u; y < p.chunks; y++) {
        sum += x[y * p.cols + col];
    }
    out[col] = sum;
}
