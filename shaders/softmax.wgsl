// Softmax and log-softmax over the last axis of a [rows, w] matrix, and their backwards.
//
//   softmax:              y_i = e^{x_i − m} / s,        m = max_j x_j,  s = Σ_j e^{x_j − m}
//   log_softmax:          y_i = x_i − (m + ln s)
//   softmax_backward:     dx_i = y_i·(dy_i − Σ_j dy_j·y_j)          (y: the softmax output)
//   log_softmax_backward: dx_i = dy_i − e^{y_i}·Σ_j dy_j             (y: the log-softmax output)
//
// Tiling: each row is handled by a segment of T threads (T = the power of two ≥ w, at most
// WG, chosen on the host), so a workgroup of WG threads holds WG/T rows: short rows (layer
// widths, attention rows) share a workgroup, long rows (a full item catalogue, thousands of
// columns) get the whole workgroup. A thread walks its row with stride T (coalesced), keeps
// a running (max, sum of exponentials) pair — the online softmax, so the forward reads x
// twice rather than three times — and the segment combines the pairs in a tree reduction in
// workgroup memory. The grid is 2-d (`runtime::grid`); group g holds rows g·WG/T ...

const WG: u32 = 256u;
// The lowest finite f32: the running max starts here rather than at −∞, so that e^{m₁ − m₂}
// is never e^{−∞ + ∞} = NaN, and −∞ logits (masked entries) contribute e^{−∞} = 0.
const LOWEST: f32 = -3.4028235e38;

struct Params {
    rows: u32,
    w: u32,
    // Threads per row, a power of two ≤ WG.
    t: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

struct Row {
    // Row index; `live` is false for the padding rows of the last workgroup.
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

// Σ of v over the segment of `lid`; every thread of the segment gets the total.
fn segment_sum(v: f32, lid: u32) -> f32 {
    let lane = lid % p.t;
    red_s[lid] = v;
    workgroupBarrier();
    for (var stride = p.t / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            red_s[lid] += red_s[lid + stride];
        }
        workgroupBarrier();
    }
    let total = red_s[lid - lane];
    workgroupBarrier();
    return total;
}

// Combines the threads' (max, Σ e^{x − max}) pairs over the segment of `lid`.
fn segment_max_sum(m: f32, s: f32, lid: u32) -> vec2<f32> {
    let lane = lid % p.t;
    red_m[lid] = m;
    red_s[lid] = s;
    workgroupBarrier();
    for (var stride = p.t / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            let m1 = red_m[lid];
            let m2 = red_m[lid + stride];
            let mm = max(m1, m2);
            red_s[lid] = red_s[lid] * exp(m1 - mm) + red_s[lid + stride] * exp(m2 - mm);
            red_m[lid] = mm;
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(red_m[lid - lane], red_s[lid - lane]);
    workgroupBarrier();
    return total;
}

// The row's max and Σ e^{x − max}, in one pass over x (`a`).
fn row_max_sum(r: Row, lid: u32) -> vec2<f32> {
    var m = LOWEST;
    var s = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        let v = a[r.base + i];
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    return segment_max_sum(m, s, lid);
}

// a = x; b unused.
@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    let ms = row_max_sum(r, lid);
    let inv = 1.0 / ms.y;
    for (var i = r.lane; i < r.end; i += p.t) {
        out[r.base + i] = exp(a[r.base + i] - ms.x) * inv;
    }
}

// a = x; b unused.
@compute @workgroup_size(WG)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    let ms = row_max_sum(r, lid);
    let lse = ms.x + log(ms.y);
    for (var i = r.lane; i < r.end; i += p.t) {
        out[r.base + i] = a[r.base + i] - lse;
    }
}

// a = y (softmax output), b = dy.
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    var acc = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        acc += a[r.base + i] * b[r.base + i];
    }
    let dot_yd = segment_sum(acc, lid);
    for (var i = r.lane; i < r.end; i += p.t) {
        out[r.base + i] = a[r.base + i] * (b[r.base + i] - dot_yd);
    }
}

// a = y (log-softmax output), b = dy.
@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let r = row_of(wid, nwg, lid);
    var acc = 0.0;
    for (var i = r.lane; i < r.end; i += p.t) {
        acc += b[r.base + i];
    }
    let total = segment_sum(acc, lid);
    for (var i = r.lane; i < r.end; i += p.t) {
        out[r.base + i] = b[r.base + i] - exp(a[r.base + i]) * total;
    }
}
