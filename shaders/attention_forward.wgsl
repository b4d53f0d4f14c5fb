// Fused scaled-dot-product attention, forward (FlashAttention-2 online softmax); the GPU twin
// of `src/backend/cpu/attention.rs`.
//
// q, k, v, out: [B, L, D] with D = H·d_h; head h reads columns h·d_h..(h+1)·d_h in place (row
// stride D). mask: [B, L] (key j of item b is real iff mask ≠ 0; unused when has_mask = 0).
// lse: [B, H, L]. With s = 1/√d_h, per (b, h) and per block of query rows, streaming over
// blocks of keys:
//   S = Q_i K_jᵀ · s     (entries masked out: padding keys and, when causal, keys j > i)
//   m' = max(m, rowmax S);  P = exp(S − m');  l = l·exp(m − m') + rowsum P
//   acc = acc·exp(m − m') + (P ∘ Z) V_j      (Z: inverted dropout, 0 or keep_scale)
//   O = acc / l,  LSE = m + ln l             (a row with no visible key: O = 0, LSE = +∞)
// Dropout: Z_ij = 0 iff uniform_at(stream, ((b·H + h)·L + i)·L + j) < p (u32 arithmetic,
// wrapping, as on the CPU); `hash32` is `rng::hash32` and drop_key = `rng::stream_key(stream)`,
// so the mask is bit-identical to the CPU's. The backward passes are in
// attention_backward.wgsl.
//
// Tiling: one workgroup of WG = 128 threads per (b, h, block of BQ = 32 query rows). The
// query block sits in workgroup memory; each block of BK = 16 keys is staged there (K first,
// then V in the same tile). Per key block: (1) scores: thread t owns row t/4 and keys
// t%4 + 4u, u < 4; (2) online softmax: one thread per row; (3) acc += P V: thread t owns row
// t/4 and columns t%4 + 4k, k < MAX_DH/4, in registers. Tiles have row stride PAD = MAX_DH + 1
// (no bank conflicts between rows). Workgroup memory: (32 + 16)·65 + 32·17 + 3·32 + 16 words
// = 15 104 bytes. Causal rows skip the key blocks past the query block.

const BQ: u32 = 32u;
const BK: u32 = 16u;
const WG: u32 = 128u;
const MAX_DH: u32 = 64u;
const PAD: u32 = 65u;
const SP: u32 = 17u;
// Accumulator columns per thread: MAX_DH / 4.
const COLS: u32 = 16u;
// "No key seen yet": a finite stand-in for −∞ (exp of it minus any score is 0).
const NONE: f32 = -3.0e38;

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
    q_blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;

var<workgroup> qs: array<f32, BQ * PAD>;
var<workgroup> kv: array<f32, BK * PAD>;
var<workgroup> ss: array<f32, BQ * SP>;
var<workgroup> kvis: array<u32, BK>;
var<workgroup> row_m: array<f32, BQ>;
var<workgroup> row_l: array<f32, BQ>;
var<workgroup> row_c: array<f32, BQ>;

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

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let flat = wid.x + wid.y * nwg.x;
    if (flat >= p.batch * p.heads * p.q_blocks) {
        return;
    }
    let qb = flat % p.q_blocks;
    let h = (flat / p.q_blocks) % p.heads;
    let b = flat / (p.q_blocks * p.heads);
    let q0 = qb * BQ;
    let dh = p.head_dim;
    let len = p.len;
    let base = b * len * p.width + h * dh;
    let row_base = (b * p.heads + h) * len; // row i of this head in [B, H, L]

    for (var e = lid; e < BQ * dh; e += WG) {
        let r = e / dh;
        let d = e % dh;
        var x = 0.0;
        if (q0 + r < len) {
            x = q[base + (q0 + r) * p.width + d];
        }
        qs[r * PAD + d] = x;
    }
    if (lid < BQ) {
        row_m[lid] = NONE;
        row_l[lid] = 0.0;
    }

    var acc: array<f32, COLS>;
    let r3 = lid / 4u;
    let c3 = lid % 4u;
    var key_end = len;
    if (p.causal != 0u) {
        key_end = min(len, q0 + BQ);
    }
    for (var k0 = 0u; k0 < key_end; k0 += BK) {
        workgroupBarrier(); // the previous block's P V is done with kv
        for (var e = lid; e < BK * dh; e += WG) {
            let j = e / dh;
            let d = e % dh;
            var x = 0.0;
            if (k0 + j < len) {
                x = k[base + (k0 + j) * p.width + d];
            }
            kv[j * PAD + d] = x;
        }
        if (lid < BK) {
            let key = k0 + lid;
            var vis = key < key_end;
            if (vis && p.has_mask != 0u) {
                vis = mask[b * len + key] != 0.0;
            }
            kvis[lid] = select(0u, 1u, vis);
        }
        workgroupBarrier();

        // (1) Raw scores Q_i K_jᵀ.
        {
            let r = lid / 4u;
            let jl = lid % 4u;
            var s0 = 0.0;
            var s1 = 0.0;
            var s2 = 0.0;
            var s3 = 0.0;
            for (var d = 0u; d < dh; d++) {
                let x = qs[r * PAD + d];
                s0 += x * kv[jl * PAD + d];
                s1 += x * kv[(jl + 4u) * PAD + d];
                s2 += x * kv[(jl + 8u) * PAD + d];
                s3 += x * kv[(jl + 12u) * PAD + d];
            }
            ss[r * SP + jl] = s0;
            ss[r * SP + jl + 4u] = s1;
            ss[r * SP + jl + 8u] = s2;
            ss[r * SP + jl + 12u] = s3;
        }
        workgroupBarrier();

        // (2) V replaces K in the tile while one thread per row runs the online softmax.
        for (var e = lid; e < BK * dh; e += WG) {
            let j = e / dh;
            let d = e % dh;
            var x = 0.0;
            if (k0 + j < len) {
                x = v[base + (k0 + j) * p.width + d];
            }
            kv[j * PAD + d] = x;
        }
        if (lid < BQ) {
            let r = lid;
            let i = q0 + r;
            var block_max = NONE;
            var any = false;
            for (var j = 0u; j < BK; j++) {
                let key = k0 + j;
                if (kvis[j] != 0u && (p.causal == 0u || key <= i)) {
                    let s = ss[r * SP + j] * p.scale;
                    ss[r * SP + j] = s;
                    block_max = max(block_max, s);
                    any = true;
                }
            }
            if (any) {
                let old_max = row_m[r];
                let new_max = max(old_max, block_max);
                var sum = 0.0;
                let drop_row = (row_base + i) * len + k0;
                for (var j = 0u; j < BK; j++) {
                    let key = k0 + j;
                    var pr = 0.0;
                    if (kvis[j] != 0u && (p.causal == 0u || key <= i)) {
                        pr = exp(ss[r * SP + j] - new_max);
                        sum += pr;
                        if (p.dropout > 0.0) {
                            pr *= drop_scale(drop_row + j);
                        }
                    }
                    ss[r * SP + j] = pr;
                }
                let correction = exp(old_max - new_max);
                row_l[r] = row_l[r] * correction + sum;
                row_m[r] = new_max;
                row_c[r] = correction;
            } else {
                for (var j = 0u; j < BK; j++) {
                    ss[r * SP + j] = 0.0;
                }
                row_c[r] = 1.0;
            }
        }
        workgroupBarrier();

        // (3) acc = acc·correction + (P ∘ Z) V_j.
        // Each P entry is read once and used for all of the thread's columns.
        let correction = row_c[r3];
        for (var c = 0u; c < COLS; c++) {
            acc[c] *= correction;
        }
        for (var j = 0u; j < BK; j++) {
            let pj = ss[r3 * SP + j];
            for (var c = 0u; c < COLS; c++) {
                let d = c3 + 4u * c;
                if (d < dh) {
                    acc[c] += pj * kv[j * PAD + d];
                }
            }
        }
    }
    workgroupBarrier();

    let i = q0 + r3;
    if (i < len) {
        let l = row_l[r3];
        var inv = 0.0;
        if (l > 0.0) {
            inv = 1.0 / l;
        }
        for (var c = 0u; c < COLS; c++) {
            let d = c3 + 4u * c;
            if (d < dh) {
                out[base + i * p.width + d] = acc[c] * inv;
            }
        }
        if (c3 == 0u) {
            // +∞ as bits: WGSL has no infinite literal.
            var value = bitcast<f32>(0x7f800000u);
            if (l > 0.0) {
                value = row_m[r3] + log(l);
            }
            lse[row_base + i] = value;
        }
    }
}
