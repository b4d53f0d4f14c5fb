// The fused GRU layer (gate order r, z, n as in PyTorch; math in `src/ops/gru.rs`).
//
// Forward, per step t, for batch row b and hidden unit j (gx = x·W_ih, computed for every
// step at once by a GEMM before the steps; h = h_{t-1}, or h0 / 0 at t = 0):
//   r  = σ(gx_r + b_ir + (h·W_hh)_r + b_hr)
//   z  = σ(gx_z + b_iz + (h·W_hh)_z + b_hz)
//   hn = (h·W_hh)_n + b_hn
//   n  = tanh(gx_n + b_in + r·hn)
//   h_t = h + m_t·((n + z·(h − n)) − h)          (m_t = 1 real step, 0 padding)
// saved gates per step: [r, z, n, hn], `[B, L, 4H]`.
//
// Backward, per step t from L−1 down to 0, with carry = the gradient reaching h_t from step
// t+1 that does not go through W_hh, and dgh_{t+1}·W_hhᵀ the part that does:
//   g = dy_t + carry + dgh_{t+1}·W_hhᵀ,  dh' = m_t·g
//   dn = (1 − z)·dh',  dz = (h − n)·dh',  da_n = (1 − n²)·dn
//   da_r = r(1 − r)·hn·da_n,  da_z = z(1 − z)·dz,  dhn = r·da_n
//   dgx_t = [da_r, da_z, da_n],  dgh_t = [da_r, da_z, dhn]
//   carry ← (1 − m_t)·g + z·dh'
// and finally dh0 = carry + dgh_0·W_hhᵀ (the `finish` pass). The weight and bias gradients
// are GEMMs and column sums over all steps at once, done by the caller:
//   dW_ih = Xᵀ·dGX, dW_hh = H_prevᵀ·dGH, db_ih = Σ dGX, db_hh = Σ dGH, dx = dGX·W_ihᵀ;
// the backward step also writes H_prev (the state each step started from) for dW_hh.
//
// Tiling of the two step kernels: a workgroup of TJ × TBY threads owns TJ hidden units and
// TB = TBY·RPT batch rows (each thread RPT rows of one unit). The rows of the left operand
// (h_{t-1} forward, dgh_{t+1} backward) are staged in workgroup memory KC columns at a time;
// the weights are read from global memory, consecutive threads reading consecutive columns
// (W_hh `[H, 3H]` forward, its transpose `[3H, H]` backward: both coalesced), each weight
// value used for RPT rows. `transpose` builds W_hhᵀ once per backward through a 16 × 17
// tile; `column_sums` reduces `[rows, cols]` to per-chunk partial sums (called until one
// chunk is left), for the bias gradients.

const TJ: u32 = 32u;
const TBY: u32 = 8u;
const RPT: u32 = 2u;
const TB: u32 = 16u;
const KC: u32 = 64u;

// ---------------------------------------------------------------------------------------
// Forward step.

struct ForwardParams {
    batch: u32,
    length: u32,
    hidden: u32,
    t: u32,
    has_h0: u32,
    has_mask: u32,
    save_gates: u32,
}

@group(0) @binding(0) var<uniform> fp: ForwardParams;
@group(0) @binding(1) var<storage, read> f_gx: array<f32>;
@group(0) @binding(2) var<storage, read> f_w_hh: array<f32>;
@group(0) @binding(3) var<storage, read> f_b_ih: array<f32>;
@group(0) @binding(4) var<storage, read> f_b_hh: array<f32>;
@group(0) @binding(5) var<storage, read> f_h0: array<f32>;
@group(0) @binding(6) var<storage, read> f_mask: array<f32>;
@group(0) @binding(7) var<storage, read_write> f_hidden: array<f32>;
@group(0) @binding(8) var<storage, read_write> f_gates: array<f32>;

var<workgroup> f_tile: array<f32, TB * KC>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// Written out rather than the builtin, whose precision some implementations relax.
fn tanh_(v: f32) -> f32 {
    return 1.0 - 2.0 / (exp(2.0 * v) + 1.0);
}

// h_{t-1} of row b, unit k (the caller knows there is one: t > 0 or h0 given).
fn f_prev(b: u32, k: u32) -> f32 {
    let h = fp.hidden;
    if (fp.t > 0u) {
        return f_hidden[(b * fp.length + fp.t - 1u) * h + k];
    }
    return f_h0[b * h + k];
}

@compute @workgroup_size(TJ, TBY)
fn forward_step(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let h = fp.hidden;
    let g3 = 3u * h;
    let j = wid.x * TJ + lid.x;
    let row0 = wid.y * TB;
    var acc: array<vec3<f32>, RPT>;
    for (var i = 0u; i < RPT; i++) {
        acc[i] = vec3<f32>(0.0);
    }
    let has_prev = fp.t > 0u || fp.has_h0 == 1u;
    if (has_prev) {
        for (var k0 = 0u; k0 < h; k0 += KC) {
            for (var e = li; e < TB * KC; e += TJ * TBY) {
                let b = row0 + e / KC;
                let k = k0 + e % KC;
                var v = 0.0;
                if (b < fp.batch && k < h) {
                    v = f_prev(b, k);
                }
                f_tile[e] = v;
            }
            workgroupBarrier();
            if (j < h) {
                // A full chunk has a constant trip count, which the compiler can unroll.
                if (k0 + KC <= h) {
                    for (var kk = 0u; kk < KC; kk++) {
                        let w = (k0 + kk) * g3 + j;
                        let wv = vec3<f32>(f_w_hh[w], f_w_hh[w + h], f_w_hh[w + 2u * h]);
                        for (var i = 0u; i < RPT; i++) {
                            acc[i] += f_tile[(lid.y + i * TBY) * KC + kk] * wv;
                        }
                    }
                } else {
                    for (var kk = 0u; kk < h - k0; kk++) {
                        let w = (k0 + kk) * g3 + j;
                        let wv = vec3<f32>(f_w_hh[w], f_w_hh[w + h], f_w_hh[w + 2u * h]);
                        for (var i = 0u; i < RPT; i++) {
                            acc[i] += f_tile[(lid.y + i * TBY) * KC + kk] * wv;
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (j >= h) {
        return;
    }
    let bi = vec3<f32>(f_b_ih[j], f_b_ih[h + j], f_b_ih[2u * h + j]);
    let bh = vec3<f32>(f_b_hh[j], f_b_hh[h + j], f_b_hh[2u * h + j]);
    for (var i = 0u; i < RPT; i++) {
        let b = row0 + lid.y + i * TBY;
        if (b >= fp.batch) {
            break;
        }
        let step = b * fp.length + fp.t;
        let gx = step * g3;
        let r = sigmoid(f_gx[gx + j] + bi.x + acc[i].x + bh.x);
        let z = sigmoid(f_gx[gx + h + j] + bi.y + acc[i].y + bh.y);
        let hn = acc[i].z + bh.z;
        let n = tanh_(f_gx[gx + 2u * h + j] + bi.z + r * hn);
        var hp = 0.0;
        if (has_prev) {
            hp = f_prev(b, j);
        }
        var m = 1.0;
        if (fp.has_mask == 1u) {
            m = f_mask[step];
        }
        let updated = n + z * (hp - n);
        f_hidden[step * h + j] = hp + m * (updated - hp);
        if (fp.save_gates == 1u) {
            let s = step * 4u * h + j;
            f_gates[s] = r;
            f_gates[s + h] = z;
            f_gates[s + 2u * h] = n;
            f_gates[s + 3u * h] = hn;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Backward step (and, with `finish`, dh0 = carry + dgh_0·W_hhᵀ written into carry).

struct BackwardParams {
    batch: u32,
    length: u32,
    hidden: u32,
    t: u32,
    has_h0: u32,
    has_mask: u32,
    finish: u32,
}

@group(0) @binding(0) var<uniform> bp: BackwardParams;
@group(0) @binding(1) var<storage, read> b_w_hh_t: array<f32>;
@group(0) @binding(2) var<storage, read> b_gates: array<f32>;
@group(0) @binding(3) var<storage, read> b_hidden: array<f32>;
@group(0) @binding(4) var<storage, read> b_h0: array<f32>;
@group(0) @binding(5) var<storage, read> b_mask: array<f32>;
@group(0) @binding(6) var<storage, read> b_dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> b_carry: array<f32>;
@group(0) @binding(8) var<storage, read_write> b_dgx: array<f32>;
@group(0) @binding(9) var<storage, read_write> b_dgh: array<f32>;
@group(0) @binding(10) var<storage, read_write> b_h_prev: array<f32>;

var<workgroup> b_tile: array<f32, TB * KC>;

@compute @workgroup_size(TJ, TBY)
fn backward_step(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let h = bp.hidden;
    let g3 = 3u * h;
    let j = wid.x * TJ + lid.x;
    let row0 = wid.y * TB;
    // The step whose gate gradients flow back into this one through W_hh.
    let next = select(bp.t + 1u, 0u, bp.finish == 1u);
    let has_next = next < bp.length;
    var acc: array<f32, RPT>;
    for (var i = 0u; i < RPT; i++) {
        acc[i] = 0.0;
    }
    if (has_next) {
        for (var k0 = 0u; k0 < g3; k0 += KC) {
            for (var e = li; e < TB * KC; e += TJ * TBY) {
                let b = row0 + e / KC;
                let k = k0 + e % KC;
                var v = 0.0;
                if (b < bp.batch && k < g3) {
                    v = b_dgh[(b * bp.length + next) * g3 + k];
                }
                b_tile[e] = v;
            }
            workgroupBarrier();
            if (j < h) {
                // A full chunk has a constant trip count, which the compiler can unroll.
                if (k0 + KC <= g3) {
                    for (var kk = 0u; kk < KC; kk++) {
                        let w = b_w_hh_t[(k0 + kk) * h + j];
                        for (var i = 0u; i < RPT; i++) {
                            acc[i] += b_tile[(lid.y + i * TBY) * KC + kk] * w;
                        }
                    }
                } else {
                    for (var kk = 0u; kk < g3 - k0; kk++) {
                        let w = b_w_hh_t[(k0 + kk) * h + j];
                        for (var i = 0u; i < RPT; i++) {
                            acc[i] += b_tile[(lid.y + i * TBY) * KC + kk] * w;
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (j >= h) {
        return;
    }
    for (var i = 0u; i < RPT; i++) {
        let b = row0 + lid.y + i * TBY;
        if (b >= bp.batch) {
            break;
        }
        var carry = 0.0;
        if (has_next) {
            carry = b_carry[b * h + j] + acc[i];
        }
        if (bp.finish == 1u) {
            b_carry[b * h + j] = carry;
            continue;
        }
        let step = b * bp.length + bp.t;
        let s = step * 4u * h + j;
        let r = b_gates[s];
        let z = b_gates[s + h];
        let n = b_gates[s + 2u * h];
        let hn = b_gates[s + 3u * h];
        var hp = 0.0;
        if (bp.t > 0u) {
            hp = b_hidden[(step - 1u) * h + j];
        } else if (bp.has_h0 == 1u) {
            hp = b_h0[b * h + j];
        }
        var m = 1.0;
        if (bp.has_mask == 1u) {
            m = b_mask[step];
        }
        let g = b_dy[step * h + j] + carry;
        let d_updated = m * g;
        let dn = (1.0 - z) * d_updated;
        let dz = (hp - n) * d_updated;
        let da_n = (1.0 - n * n) * dn;
        let dr = hn * da_n;
        let dhn = r * da_n;
        let da_r = r * (1.0 - r) * dr;
        let da_z = z * (1.0 - z) * dz;
        let o = step * g3 + j;
        b_dgx[o] = da_r;
        b_dgx[o + h] = da_z;
        b_dgx[o + 2u * h] = da_n;
        b_dgh[o] = da_r;
        b_dgh[o + h] = da_z;
        b_dgh[o + 2u * h] = dhn;
        b_h_prev[step * h + j] = hp;
        b_carry[b * h + j] = (1.0 - m) * g + z * d_updated;
    }
}

// ---------------------------------------------------------------------------------------
// dst `[cols, rows]` = srcᵀ, src `[rows, cols]`, through a padded tile.

const TT: u32 = 16u;

struct TransposeParams {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> tp: TransposeParams;
@group(0) @binding(1) var<storage, read> t_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> t_dst: array<f32>;

var<workgroup> t_tile: array<f32, TT * (TT + 1u)>;

@compute @workgroup_size(TT, TT)
fn transpose(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.y * TT + lid.y;
    let c = wid.x * TT + lid.x;
    if (r < tp.rows && c < tp.cols) {
        t_tile[lid.y * (TT + 1u) + lid.x] = t_src[r * tp.cols + c];
    }
    workgroupBarrier();
    // Thread (x, y) now writes dst row wid.x·TT + y, column wid.y·TT + x.
    let dr = wid.x * TT + lid.y;
    let dc = wid.y * TT + lid.x;
    if (dr < tp.cols && dc < tp.rows) {
        t_dst[dr * tp.rows + dc] = t_tile[lid.x * (TT + 1u) + lid.y];
    }
}

// ---------------------------------------------------------------------------------------
// Column sums: dst[chunk, c] = Σ src[r, c] over the chunk's CS_ROWS rows. A workgroup owns
// CS_COLS columns of one chunk; its CS_LANES lanes take every CS_LANES-th row, then add up.

const CS_COLS: u32 = 64u;
const CS_LANES: u32 = 4u;
const CS_ROWS: u32 = 256u;

struct SumParams {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> sp: SumParams;
@group(0) @binding(1) var<storage, read> s_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_dst: array<f32>;

var<workgroup> s_part: array<f32, CS_COLS * CS_LANES>;

@compute @workgroup_size(CS_COLS, CS_LANES)
fn column_sums(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x * CS_COLS + lid.x;
    let start = wid.y * CS_ROWS;
    let end = min(sp.rows, start + CS_ROWS);
    var sum = 0.0;
    if (c < sp.cols) {
        for (var r = start + lid.y; r < end; r += CS_LANES) {
            sum += s_src[r * sp.cols + c];
        }
    }
    s_part[lid.y * CS_COLS + lid.x] = sum;
    workgroupBarrier();
    if (lid.y == 0u && c < sp.cols) {
        var total = 0.0;
        for (var l = 0u; l < CS_LANES; l++) {
            total += s_part[l * CS_COLS + lid.x];
        }
        s_dst[wid.y * sp.cols + c] = total;
    }
}
