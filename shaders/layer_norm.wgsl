// Layer normalisation over the last axis of x [rows, w], forward and backward.
//
//   forward:  μ = Σ x / w,  rstd = 1/√(Σ (x − μ)² / w + ε)   (two passes over the row, as the
//             CPU kernel), x̂ = (x − μ)·rstd,  y = x̂·g + b;  μ and rstd are kept per row.
//   backward: ĝ = dy·g,  dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))            (per row)
//             dg = Σ_rows dy·x̂,  db = Σ_rows dy                            (per column)
//
// Tiling. `layer_norm` and `layer_norm_dx`: each row is handled by a segment of T threads
// (T = the power of two ≥ w, at most WG), WG/T rows per workgroup; threads stride over the
// row by T (coalesced) and the segment sums in a tree reduction in workgroup memory.
// dg and db, deterministically and without atomics, in two passes:
//   `layer_norm_param_partials`: workgroup (column tile of COLS, row block b) with COLS × LANES
//     threads; thread (c, l) sums rows l, l + LANES, ... of the block for column c (a warp
//     reads consecutive columns), then the LANES partial sums are added in workgroup memory
//     and written to partials[b, c] (dg) and partials[blocks + b, c] (db).
//   `layer_norm_param_sums`: one thread per column adds its column's blocks in order.

const WG: u32 = 256u;
const COLS: u32 = 64u;
const LANES: u32 = 4u;

struct Params {
    rows: u32,
    w: u32,
    // Threads per row (a power of two ≤ WG) for the row kernels; rows per block for
    // `layer_norm_param_partials`.
    t: u32,
    // Row blocks of the dg/db partial sums.
    blocks: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

struct Row {
    row: u32,
    lane: u32,
    live: bool,
    base: u32,
    // The columns this thread visits: lane, lane + t, ... < end (0 when inactive).
    end: u32,
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Row {
    let group = wid.x + wid.y * nwg.x;
    let row = group * (WG / p.t) + lid / p.t;
    let live = row < p.rows;
    return Row(row, lid % p.t, live, row * p.w, select(0u, p.w, live));
}

// Σ of (u, v) over the segment of `lid`; every thread of the segment gets the totals.
fn segment_sum2(u: f32, v: f32, lid: u32) -> vec2<f32> {
    let lane = lid % p.t;
    red_a[lid] = u;
    red_b[lid] = v;
    workgroupBarrier();
    for (var stride = p.t / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            red_a[lid] += red_a[lid + stride];
            red_b[lid] += red_b[lid + stride];
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(red_a[lid - lane], red_b[lid - lane]);
    workgroupBarrier();
    return total;
}

// ---- forward ----

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    let inv_w = 1.0 / f32(p.w);
    var acc = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        acc += x[r.base + i];
    }
    let mean = segment_sum2(acc, 0.0, lid).x * inv_w;
    var m2 = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        let d = x[r.base + i] - mean;
        m2 += d * d;
    }
    let rstd = 1.0 / sqrt(segment_sum2(m2, 0.0, lid).x * inv_w + p.eps);
    for (var i = r.lane; i < r.end; i += p.t) {
        y[r.base + i] = (x[r.base + i] - mean) * rstd * gain[i] + bias[i];
    }
    if (r.live && r.lane == 0u) {
        mean_out[r.row] = mean;
        rstd_out[r.row] = rstd;
    }
}

// ---- backward ----

@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bgain: array<f32>;
@group(0) @binding(3) var<storage, read> bmean: array<f32>;
@group(0) @binding(4) var<storage, read> brstd: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
// dx for `layer_norm_dx`; the [2, blocks, w] partial sums for `layer_norm_param_partials`.
@group(0) @binding(6) var<storage, read_write> bout: array<f32>;

@compute @workgroup_size(WG)
fn layer_norm_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    var mu = 0.0;
    var rs = 0.0;
    if (r.live) {
        mu = bmean[r.row];
        rs = brstd[r.row];
    }
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        let gh = dy[r.base + i] * bgain[i];
        sum_g += gh;
        sum_gx += gh * (bx[r.base + i] - mu) * rs;
    }
    let sums = segment_sum2(sum_g, sum_gx, lid);
    let inv_w = 1.0 / f32(p.w);
    let mean_g = sums.x * inv_w;
    let mean_gx = sums.y * inv_w;
    for (var i = r.lane; i < r.end; i += p.t) {
        let xhat = (bx[r.base + i] - mu) * rs;
        bout[r.base + i] = rs * (dy[r.base + i] * bgain[i] - mean_g - xhat * mean_gx);
    }
}

@compute @workgroup_size(WG)
fn layer_norm_param_partials(@builtin(workgroup_id) wid: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * COLS + lid % COLS;
    let lane = lid / COLS;
    let block = wid.y;
    let r0 = block * p.t;
    let r1 = min(r0 + p.t, p.rows);
    var dg = 0.0;
    var db = 0.0;
    if (c < p.w) {
        for (var r = r0 + lane; r < r1; r += LANES) {
            let d = dy[r * p.w + c];
            dg += d * (bx[r * p.w + c] - bmean[r]) * brstd[r];
            db += d;
        }
    }
    red_a[lid] = dg;
    red_b[lid] = db;
    workgroupBarrier();
    if (lane == 0u && c < p.w) {
        var sg = 0.0;
        var sb = 0.0;
        for (var l = 0u; l < LANES; l++) {
            sg += red_a[lid + l * COLS];
            sb += red_b[lid + l * COLS];
        }
        bout[block * p.w + c] = sg;
        bout[(p.blocks + block) * p.w + c] = sb;
    }
}

// ---- backward, second pass of dg/db ----

@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dgain: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(WG)
fn layer_norm_param_sums(@builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let c = (wid.x + wid.y * nwg.x) * WG + lid;
    if (c >= p.w) {
        return;
    }
    var sg = 0.0;
    var sb = 0.0;
    for (var b = 0u; b < p.blocks; b++) {
        sg += partials[b * p.w + c];
        sb += partials[(p.blocks + b) * p.w + c];
    }
    dgain[c] = sg;
    dbias[c] = sb;
}
