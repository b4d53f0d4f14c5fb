// Fused scaled-dot-product attention, backward (FlashAttention-2: P is recomputed from Q, K
// and the forward's log-sum-exp); the GPU twin of `src/backend/cpu/attention.rs`. Layouts,
// masking and the dropout mask Z are those of attention_forward.wgsl. With s = 1/√d_h:
//   P = exp(S·s − LSE) on visible entries, 0 elsewhere and on rows with LSE = +∞
//   Dᵢ = Σ_c dO_ic O_ic
//   dV_j = Σ_i (P ∘ Z)ᵢⱼ dOᵢ;  dP = (dO Vᵀ) ∘ Z;  dS = P ∘ (dP − D) · s
//   dQᵢ = Σ_j dSᵢⱼ K_j;  dK_j = Σ_i dSᵢⱼ Qᵢ
// Three passes, no atomics (every output element is written by exactly one thread):
//   attention_row_dot: one thread per (b, i, h) row: stats[2·r] = LSE_r, stats[2·r + 1] = D_r
//     for r = (b·H + h)·L + i (LSE and D travel together, which keeps the later passes at
//     8 storage buffers).
//   attention_dkdv: one workgroup (128 threads) per (b, h, block of KV_BK = 16 keys); K_j and
//     V_j stay in workgroup memory, blocks of KV_BQ = 8 query rows (Qᵢ, dOᵢ) stream through.
//     Thread t computes the entry (row t/16, key t%16) of P ∘ Z and dS (two dots of length
//     d_h), then owns key t/8 and columns t%8 + 8c of dK_j, dV_j in registers. Causal key
//     blocks start at the first query row that can see them.
//   attention_dq: one workgroup (128 threads) per (b, h, block of Q_BQ = 16 query rows); Qᵢ,
//     dOᵢ, LSE and D stay, blocks of Q_BK = 8 keys (K_j, V_j) stream through. Thread t
//     computes dS at (row t/8, key t%8), then owns row t/8 and columns t%8 + 8c of dQᵢ.
//     Causal rows stop at the key block past the query block.
// Tiles have row stride PAD = MAX_DH + 1. Workgroup memory: dK/dV (2·16 + 2·8)·65 + 2·8·16
// + 16 + 3·8 words = 13 632 bytes; dQ (2·16 + 2·8)·65 + 16·8 + 8 + 3·16 words = 13 216 bytes.

const WG: u32 = 256u;
const PASS_WG: u32 = 128u;
const KV_BK: u32 = 16u;
const KV_BQ: u32 = 8u;
const Q_BQ: u32 = 16u;
const Q_BK: u32 = 8u;
const MAX_DH: u32 = 64u;
const PAD: u32 = 65u;
// Lanes sharing one row of an accumulator, and the columns each owns: MAX_DH / LANES.
const LANES: u32 = 8u;
const COLS: u32 = 8u;

struct Params {
    batch: u32,
    len: u32,
    width: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
    causal: u32,
    has_mask: u32,
    dropout: f32,
    keep_scale: f32,
    drop_key: u32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// attention_row_dot
@group(0) @binding(1) var<storage, read> rd_out: array<f32>;
@group(0) @binding(2) var<storage, read> rd_d_out: array<f32>;
@group(0) @binding(3) var<storage, read> rd_lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> rd_stats: array<f32>;

@compute @workgroup_size(WG)
fn attention_row_dot(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let n = (wid.x + wid.y * nwg.x) * WG + lid; // (b·L + i)·H + h
    if (n >= p.batch * p.len * p.heads) {
        return;
    }
    let h = n % p.heads;
    let i = (n / p.heads) % p.len;
    let b = n / (p.heads * p.len);
    let dh = p.head_dim;
    let start = n * dh; // D = H·d_h: row (b, i), columns h·d_h..
    var sum = 0.0;
    for (var d = 0u; d < dh; d++) {
        sum += rd_d_out[start + d] * rd_out[start + d];
    }
    let r = (b * p.heads + h) * p.len + i;
    rd_stats[2u * r] = rd_lse[r];
    rd_stats[2u * r + 1u] = sum;
}

// attention_dkdv and attention_dq
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> d_out: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read> mask: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_a: array<f32>; // dK, or dQ
@group(0) @binding(8) var<storage, read_write> grad_b: array<f32>; // dV (dkdv only)

// `rng::hash32` (Wellons' lowbias32).
fn hash32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// The inverted-dropout scale of flat probability index `index`: `rng::uniform_at` < p → 0.
fn drop_scale(index: u32) -> f32 {
    let u = f32(hash32(index ^ p.drop_key) >> 8u) * (1.0 / 16777216.0);
    return select(p.keep_scale, 0.0, u < p.dropout);
}

// Whether key `key` of item `b` is real (in range and not padding).
fn key_real(b: u32, key: u32) -> bool {
    if (key >= p.len) {
        return false;
    }
    return p.has_mask == 0u || mask[b * p.len + key] != 0.0;
}

// Whether an LSE is finite (the row sees some key), tested on its bits.
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// (P ∘ Z, dS) at query row i and key j, from the raw dots q·k and dO·v. `row_ok` says the row
// is in range with a finite LSE, `key_ok` that the key is real.
fn probs_and_grad(row_base: u32, i: u32, j: u32, row_ok: bool, key_ok: bool, qk: f32,
                  dov: f32, row_lse: f32, row_dot: f32) -> vec2<f32> {
    if (!row_ok || !key_ok || (p.causal != 0u && j > i)) {
        return vec2<f32>(0.0, 0.0);
    }
    let pr = exp(qk * p.scale - row_lse);
    if (p.dropout > 0.0) {
        let z = drop_scale((row_base + i) * p.len + j);
        return vec2<f32>(pr * z, pr * (dov * z - row_dot) * p.scale);
    }
    return vec2<f32>(pr, pr * (dov - row_dot) * p.scale);
}

var<workgroup> kv_k: array<f32, KV_BK * PAD>;
var<workgroup> kv_v: array<f32, KV_BK * PAD>;
var<workgroup> kv_q: array<f32, KV_BQ * PAD>;
var<workgroup> kv_do: array<f32, KV_BQ * PAD>;
var<workgroup> kv_pz: array<f32, KV_BQ * KV_BK>;
var<workgroup> kv_ds: array<f32, KV_BQ * KV_BK>;
var<workgroup> kv_real: array<u32, KV_BK>;
var<workgroup> kv_ok: array<u32, KV_BQ>;
var<workgroup> kv_lse: array<f32, KV_BQ>;
var<workgroup> kv_dot: array<f32, KV_BQ>;

@compute @workgroup_size(PASS_WG)
fn attention_dkdv(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.batch * p.heads * p.blocks) {
        return;
    }
    let kb = flat % p.blocks;
    let h = (flat / p.blocks) % p.heads;
    let b = flat / (p.blocks * p.heads);
    let k0 = kb * KV_BK;
    let dh = p.head_dim;
    let len = p.len;
    let base = b * len * p.width + h * dh;
    let row_base = (b * p.heads + h) * len;

    for (var e = lid; e < KV_BK * dh; e += PASS_WG) {
        let j = e / dh;
        let d = e % dh;
        var x = 0.0;
        var y = 0.0;
        if (k0 + j < len) {
            x = k[base + (k0 + j) * p.width + d];
            y = v[base + (k0 + j) * p.width + d];
        }
        kv_k[j * PAD + d] = x;
        kv_v[j * PAD + d] = y;
    }
    if (lid < KV_BK) {
        kv_real[lid] = select(0u, 1u, key_real(b, k0 + lid));
    }

    var dk: array<f32, COLS>;
    var dv: array<f32, COLS>;
    let sr = lid / KV_BK; // score phase: row
    let sj = lid % KV_BK; // score phase: key
    let aj = lid / LANES; // accumulate phase: key
    let ac = lid % LANES; // accumulate phase: first column
    var q_start = 0u;
    if (p.causal != 0u) {
        q_start = (k0 / KV_BQ) * KV_BQ;
    }
    for (var q0 = q_start; q0 < len; q0 += KV_BQ) {
        workgroupBarrier(); // the previous block's accumulation is done with the tiles
        for (var e = lid; e < KV_BQ * dh; e += PASS_WG) {
            let r = e / dh;
            let d = e % dh;
            var x = 0.0;
            var y = 0.0;
            if (q0 + r < len) {
                x = q[base + (q0 + r) * p.width + d];
                y = d_out[base + (q0 + r) * p.width + d];
            }
            kv_q[r * PAD + d] = x;
            kv_do[r * PAD + d] = y;
        }
        if (lid < KV_BQ) {
            let i = q0 + lid;
            var ok = false;
            var l = 0.0;
            var dot = 0.0;
            if (i < len) {
                l = stats[2u * (row_base + i)];
                dot = stats[2u * (row_base + i) + 1u];
                ok = finite(l);
            }
            kv_ok[lid] = select(0u, 1u, ok);
            kv_lse[lid] = select(0.0, l, ok);
            kv_dot[lid] = dot;
        }
        workgroupBarrier();

        {
            var qk = 0.0;
            var dov = 0.0;
            for (var d = 0u; d < dh; d++) {
                qk += kv_q[sr * PAD + d] * kv_k[sj * PAD + d];
                dov += kv_do[sr * PAD + d] * kv_v[sj * PAD + d];
            }
            let g = probs_and_grad(row_base, q0 + sr, k0 + sj, kv_ok[sr] != 0u,
                                   kv_real[sj] != 0u, qk, dov, kv_lse[sr], kv_dot[sr]);
            kv_pz[sr * KV_BK + sj] = g.x;
            kv_ds[sr * KV_BK + sj] = g.y;
        }
        workgroupBarrier();

        for (var r = 0u; r < KV_BQ; r++) {
            let pz = kv_pz[r * KV_BK + aj];
            let ds = kv_ds[r * KV_BK + aj];
            for (var c = 0u; c < COLS; c++) {
                let d = ac + LANES * c;
                if (d < dh) {
                    dv[c] += pz * kv_do[r * PAD + d];
                    dk[c] += ds * kv_q[r * PAD + d];
                }
            }
        }
    }

    let key = k0 + aj;
    if (key < len) {
        for (var c = 0u; c < COLS; c++) {
            let d = ac + LANES * c;
            if (d < dh) {
                grad_a[base + key * p.width + d] = dk[c];
                grad_b[base + key * p.width + d] = dv[c];
            }
        }
    }
}

var<workgroup> dq_q: array<f32, Q_BQ * PAD>;
var<workgroup> dq_do: array<f32, Q_BQ * PAD>;
var<workgroup> dq_k: array<f32, Q_BK * PAD>;
var<workgroup> dq_v: array<f32, Q_BK * PAD>;
var<workgroup> dq_ds: array<f32, Q_BQ * Q_BK>;
var<workgroup> dq_real: array<u32, Q_BK>;
var<workgroup> dq_ok: array<u32, Q_BQ>;
var<workgroup> dq_lse: array<f32, Q_BQ>;
var<workgroup> dq_dot: array<f32, Q_BQ>;

@compute @workgroup_size(PASS_WG)
fn attention_dq(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.batch * p.heads * p.blocks) {
        return;
    }
    let qb = flat % p.blocks;
    let h = (flat / p.blocks) % p.heads;
    let b = flat / (p.blocks * p.heads);
    let q0 = qb * Q_BQ;
    let dh = p.head_dim;
    let len = p.len;
    let base = b * len * p.width + h * dh;
    let row_base = (b * p.heads + h) * len;

    for (var e = lid; e < Q_BQ * dh; e += PASS_WG) {
        let r = e / dh;
        let d = e % dh;
        var x = 0.0;
        var y = 0.0;
        if (q0 + r < len) {
            x = q[base + (q0 + r) * p.width + d];
            y = d_out[base + (q0 + r) * p.width + d];
        }
        dq_q[r * PAD + d] = x;
        dq_do[r * PAD + d] = y;
    }
    if (lid < Q_BQ) {
        let i = q0 + lid;
        var ok = false;
        var l = 0.0;
        var dot = 0.0;
        if (i < len) {
            l = stats[2u * (row_base + i)];
            dot = stats[2u * (row_base + i) + 1u];
            ok = finite(l);
        }
        dq_ok[lid] = select(0u, 1u, ok);
        dq_lse[lid] = select(0.0, l, ok);
        dq_dot[lid] = dot;
    }

    var dq: array<f32, COLS>;
    let sr = lid / Q_BK; // score phase: row
    let sj = lid % Q_BK; // score phase: key
    let ar = lid / LANES; // accumulate phase: row
    let ac = lid % LANES; // accumulate phase: first column
    var key_end = len;
    if (p.causal != 0u) {
        key_end = min(len, q0 + Q_BQ);
    }
    for (var k0 = 0u; k0 < key_end; k0 += Q_BK) {
        workgroupBarrier(); // the previous block's accumulation is done with the tiles
        for (var e = lid; e < Q_BK * dh; e += PASS_WG) {
            let j = e / dh;
            let d = e % dh;
            var x = 0.0;
            var y = 0.0;
            if (k0 + j < len) {
                x = k[base + (k0 + j) * p.width + d];
                y = v[base + (k0 + j) * p.width + d];
            }
            dq_k[j * PAD + d] = x;
            dq_v[j * PAD + d] = y;
        }
        if (lid < Q_BK) {
            dq_real[lid] = select(0u, 1u, key_real(b, k0 + lid));
        }
        workgroupBarrier();

        {
            var qk = 0.0;
            var dov = 0.0;
            for (var d = 0u; d < dh; d++) {
                qk += dq_q[sr * PAD + d] * dq_k[sj * PAD + d];
                dov += dq_do[sr * PAD + d] * dq_v[sj * PAD + d];
            }
            let g = probs_and_grad(row_base, q0 + sr, k0 + sj, dq_ok[sr] != 0u,
                                   dq_real[sj] != 0u, qk, dov, dq_lse[sr], dq_dot[sr]);
            dq_ds[sr * Q_BK + sj] = g.y;
        }
        workgroupBarrier();

        for (var j = 0u; j < Q_BK; j++) {
            let ds = dq_ds[ar * Q_BK + j];
            for (var c = 0u; c < COLS; c++) {
                let d = ac + LANES * c;
                if (d < dh) {
                    dq[c] += ds * dq_k[j * PAD + d];
                }
            }
        }
    }

    let i = q0 + ar;
    if (i < len) {
        for (var c = 0u; c < COLS; c++) {
            let d = ac + LANES * c;
            if (d < dh) {
                grad_a[base + i * p.width + d] = dq[c];
            }
        }
    }
}
