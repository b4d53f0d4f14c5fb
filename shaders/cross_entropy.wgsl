// Fused softmax cross-entropy over logits x [rows, w] with targets t and row weights ω
// (ω = 0 marks padding), loss and gradient in one pass over each row:
//
//   m_r = max_j x_rj,  s_r = Σ_j e^{x_rj − m_r},  lse_r = m_r + ln s_r
//   L   = Σ_r ω_r·(lse_r − x_{r,t_r}) · scale            (scale = 1/Σω, 0 when Σω = 0)
//   dx_rj = ω_r·scale·(e^{x_rj − m_r}/s_r − [j = t_r])   (0 on rows with ω_r = 0)
//
// Two entry points:
//   `cross_entropy_rows`: each row is handled by a segment of T threads (T = the power of two
//     ≥ w, at most WG; WG/T rows per workgroup). A thread walks its row with stride T keeping a
//     running (max, Σ e^{x − max}) pair (online softmax); the segment combines the pairs in a
//     tree reduction in workgroup memory; a second pass over the row writes the gradient.
//     Writes the row's weighted loss ω_r·(lse_r − x_{r,t_r}) to row_loss[r].
//   `cross_entropy_loss`: one workgroup adds row_loss in a fixed order (strided per thread,
//     then a tree), times scale, into the rank-0 loss: deterministic, no atomics, no readback.

const WG: u32 = 256u;
// The running max starts at the lowest finite f32 (see softmax.wgsl).
const LOWEST: f32 = -3.4028235e38;

struct Params {
    rows: u32,
    w: u32,
    // Threads per row, a power of two ≤ WG (`cross_entropy_rows`).
    t: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

// ---- per-row loss and gradient ----

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(WG)
fn cross_entropy_rows(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    let row = group * (WG / p.t) + lid / p.t;
    let lane = lid % p.t;
    let live = row < p.rows;
    let base = row * p.w;
    let end = select(0u, p.w, live);

    var m = LOWEST;
    var s = 0.0;
    for (var i = lane; i < end; i += p.t) {
        let v = logits[base + i];
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
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
    m = red_m[lid - lane];
    s = red_s[lid - lane];
    if (!live) {
        return;
    }

    let weight = weights[row];
    let skip = weight == 0.0;
    let tgt = targets[row];
    let ws = weight * p.scale;
    let factor = ws / s;
    for (var i = lane; i < end; i += p.t) {
        var g = exp(logits[base + i] - m) * factor;
        if (i == tgt) {
            g -= ws;
        }
        grad[base + i] = select(g, 0.0, skip);
    }
    if (lane == 0u) {
        let lse = m + log(s);
        row_loss[row] = select(weight * (lse - logits[base + tgt]), 0.0, skip);
    }
}

// ---- the rank-0 loss ----

@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WG)
fn cross_entropy_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.rows; i += WG) {
        acc += losses[i];
    }
    red_s[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red_s[lid] += red_s[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        loss[0] = red_s[0] * p.scale;
    }
}
