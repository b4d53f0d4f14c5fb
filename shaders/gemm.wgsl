// Tiled GEMM, batched, with transposes through strides and fused epilogues.
//
//   C[z] = op(A)[z] · op(B)[z]      op(A) [m, k], op(B) [k, n], C [m, n], z = batch item
//
// A element (i, l) of item z is a[z·batch_stride_a + i·rs_a + l·cs_a] and B element (l, j) is
// b[z·batch_stride_b + l·rs_b + j·cs_b], so a transposed operand is only other strides (no
// transpose pass) and a `b` shared by the batch has batch_stride_b = 0. C is row-major.
// Backward (ops/matmul.rs) is this kernel again with other transposes: for C = A·B,
// dA = dC·Bᵀ and dB = Aᵀ·dC.
//
// Tiling: a workgroup of 16×16 threads computes a 64×64 tile of C; each thread holds a 4×4
// block in registers (rows 4·ty.., columns 4·tx..). K advances in steps of TK = 16: the
// 64×16 slice of op(A) and the 16×64 slice of op(B) are staged in workgroup memory
// (2 × 4.25 KiB, rows padded against bank conflicts) as vec4s along m (resp. n), so the inner
// loop reads one vec4 of each per k and does 16 FMAs; the next slice is fetched into
// registers meanwhile. Global loads are coalesced for either layout: consecutive threads walk
// whichever of k and m (n) is contiguous in memory. Out-of-range rows, columns and k read as
// 0; stores are guarded. Grid: x = column tiles, y = row tiles (+ tile_row_offset),
// z = split·batch + item (+ z_offset), so the host can cut grids past 65 535 into several
// dispatches.
//
// Split-K (`gemm` only): a product with few output tiles and a long k is cut into `splits`
// ranges of k_per_split; split s writes its partial product to C[s, item] and `sum_splits`
// adds the partials: C = Σ_s C_s. With splits = 1 `gemm` writes C directly.
//
// Epilogues (the entry points differ only in what they do with the accumulated tile):
//   gemm            C = op(A)·op(B)
//   gemm_bias       C = op(A)·op(B) + bias[j]                          (FFN: y = h W2 + b2)
//   gemm_bias_act   C = a = op(A)·op(B) + bias[j];  H = act(a)·s(i·n + j)        (FFN: a, h)
//   gemm_act_grad   C = da = op(A)·op(B) · act'(a)·s(i·n + j), a = side[i·n + j];
//                   H = act(a)·s(i·n + j)                  (FFN: da = dh ∘ s ∘ act'(a), h)
// act is ReLU or the exact GELU a·Φ(a) (Φ through the same erf approximation as the CPU:
// Abramowitz & Stegun 7.1.26); s is the inverted-dropout scale [u ≥ p] / (1 − p) with
// u = uniform_at(stream, i·n + j) = (hash32((i·n + j) ^ stream_key(stream)) >> 8) · 2⁻²⁴, the
// CPU's index formula (wrapping u32), or 1 without dropout. The FFN entries use batch 1 and
// no split. The FFN (ops/ffn.rs) is then: forward a, h = gemm_bias_act(x, W1, b1),
// y = gemm_bias(h, W2, b2); backward da, h = gemm_act_grad(dy, W2ᵀ, a), dW2 = gemm(hᵀ, dy),
// dW1 = gemm(xᵀ, da), dx = gemm(da, W1ᵀ), db1 and db2 column sums (ffn_bias_grad.wgsl).

const TILE: u32 = 64u;
const TK: u32 = 16u;
const WG_SIDE: u32 = 16u;
const WG: u32 = 256u;
const SUM_WG: u32 = 256u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    rs_a: u32,
    cs_a: u32,
    rs_b: u32,
    cs_b: u32,
    batch_stride_a: u32,
    batch_stride_b: u32,
    batch: u32,
    splits: u32,
    k_per_split: u32,
    tile_row_offset: u32,
    z_offset: u32,
    // Epilogue of the FFN entries.
    activation: u32, // 0 ReLU, 1 GELU
    dropout: u32,    // 0 or 1
    drop_p: f32,
    drop_scale: f32, // 1 / (1 − p)
    drop_key: u32,   // stream_key(stream)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// The bias (indexed by column) or, in gemm_act_grad, the saved pre-activation (by element).
@group(0) @binding(4) var<storage, read> side: array<f32>;
@group(0) @binding(5) var<storage, read_write> h: array<f32>;

// op(A)[m0 + 4r + q, k0 + l] at a_tile[l·ROW + r][q]; op(B)[k0 + l, n0 + 4r + q] at
// b_tile[l·ROW + r][q]. A row of 16 vec4s is padded to ROW = 17, so that the staging stores of a
// k-contiguous operand (16 threads along l, 2 along r) fall in 16 banks, not in 2.
const ROW: u32 = 17u;
var<workgroup> a_tile: array<vec4<f32>, TK * ROW>;
var<workgroup> b_tile: array<vec4<f32>, TK * ROW>;

// Where one thread's share i (of 4) of a 64×16 staging load lies: `outer` (row of op(A) or
// column of op(B)) and `l` (k within the slice), chosen so that consecutive threads read
// consecutive addresses: along k when k is contiguous, else along outer.
fn stage_coords(lid: u32, i: u32, k_contiguous: bool) -> vec2<u32> {
    if (k_contiguous) {
        return vec2<u32>(lid / TK + 16u * i, lid % TK);
    }
    return vec2<u32>(lid % TILE, lid / TILE + 4u * i);
}

struct Tile {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
}

// One thread's 4 + 4 values of the slice of op(A) and op(B) at depth k0 (0 outside).
struct Slice {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn load_slice(m0: u32, n0: u32, a_base: u32, b_base: u32, k0: u32, k_end: u32, lid: u32)
    -> Slice {
    var s = Slice(vec4<f32>(0.0), vec4<f32>(0.0));
    let a_k_contiguous = p.cs_a == 1u;
    let b_k_contiguous = p.rs_b == 1u;
    for (var i = 0u; i < 4u; i++) {
        let ca = stage_coords(lid, i, a_k_contiguous);
        let row = m0 + ca.x;
        let ka = k0 + ca.y;
        if (row < p.m && ka < k_end) {
            s.a[i] = a[a_base + row * p.rs_a + ka * p.cs_a];
        }
        let cb = stage_coords(lid, i, b_k_contiguous);
        let col = n0 + cb.x;
        let kb = k0 + cb.y;
        if (col < p.n && kb < k_end) {
            s.b[i] = b[b_base + kb * p.rs_b + col * p.cs_b];
        }
    }
    return s;
}

fn store_slice(s: Slice, lid: u32) {
    let a_k_contiguous = p.cs_a == 1u;
    let b_k_contiguous = p.rs_b == 1u;
    for (var i = 0u; i < 4u; i++) {
        let ca = stage_coords(lid, i, a_k_contiguous);
        a_tile[ca.y * ROW + ca.x / 4u][ca.x % 4u] = s.a[i];
        let cb = stage_coords(lid, i, b_k_contiguous);
        b_tile[cb.y * ROW + cb.x / 4u][cb.x % 4u] = s.b[i];
    }
}

// The 4×4 block of op(A)·op(B) of thread `lid` (rows m0 + 4·ty + r, columns n0 + 4·tx + q)
// over k in [k_begin, k_end). The next slice is loaded into registers before the current
// one is multiplied, so its global-memory latency overlaps the FMAs.
fn tile_product(m0: u32, n0: u32, a_base: u32, b_base: u32, k_begin: u32, k_end: u32,
                lid: u32) -> Tile {
    let tx = lid % WG_SIDE;
    let ty = lid / WG_SIDE;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var next = load_slice(m0, n0, a_base, b_base, k_begin, k_end, lid);
    for (var k0 = k_begin; k0 < k_end; k0 += TK) {
        store_slice(next, lid);
        workgroupBarrier();
        if (k0 + TK < k_end) {
            next = load_slice(m0, n0, a_base, b_base, k0 + TK, k_end, lid);
        }
        for (var l = 0u; l < TK; l++) {
            let av = a_tile[l * ROW + ty];
            let bv = b_tile[l * ROW + tx];
            c0 = fma(vec4<f32>(av.x), bv, c0);
            c1 = fma(vec4<f32>(av.y), bv, c1);
            c2 = fma(vec4<f32>(av.z), bv, c2);
            c3 = fma(vec4<f32>(av.w), bv, c3);
        }
        workgroupBarrier();
    }
    return Tile(c0, c1, c2, c3);
}

fn tile_row(t: Tile, r: u32) -> vec4<f32> {
    switch (r) {
        case 0u: { return t.c0; }
        case 1u: { return t.c1; }
        case 2u: { return t.c2; }
        default: { return t.c3; }
    }
}

// The tile of workgroup `wid` (no split-K for the epilogue entries: z is the batch item).
fn product_of_group(wid: vec3<u32>, lid: u32) -> Tile {
    let z = wid.z + p.z_offset;
    let item = z % p.batch;
    let split = z / p.batch;
    let k_begin = split * p.k_per_split;
    let k_end = min(p.k, k_begin + p.k_per_split);
    return tile_product((wid.y + p.tile_row_offset) * TILE, wid.x * TILE,
                        item * p.batch_stride_a, item * p.batch_stride_b, k_begin, k_end, lid);
}

fn hash32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// The inverted-dropout scale of hidden element `index`.
fn dropout_scale(index: u32) -> f32 {
    if (p.dropout == 0u) {
        return 1.0;
    }
    let u = f32(hash32(index ^ p.drop_key) >> 8u) * (1.0 / 16777216.0);
    return select(0.0, p.drop_scale, u >= p.drop_p);
}

// (erf(x), e^{−x²}), Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as on the CPU.
fn erf_and_gaussian(x: f32) -> vec2<f32> {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let gaussian = exp(-ax * ax);
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214138 + t * (-1.4531521
        + t * 1.0614054))));
    let e = 1.0 - poly * gaussian;
    return vec2<f32>(select(-e, e, x >= 0.0), gaussian);
}

// (act(a), act'(a)).
fn activate(x: f32) -> vec2<f32> {
    if (p.activation == 0u) {
        return select(vec2<f32>(0.0, 0.0), vec2<f32>(x, 1.0), x > 0.0);
    }
    let eg = erf_and_gaussian(x * 0.70710678);
    let cdf = 0.5 * (1.0 + eg.x);
    return vec2<f32>(x * cdf, cdf + x * eg.y * 0.3989423);
}

@compute @workgroup_size(WG_SIDE, WG_SIDE)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = product_of_group(wid, lid);
    let out_base = (wid.z + p.z_offset) * p.m * p.n;
    let row0 = (wid.y + p.tile_row_offset) * TILE + 4u * (lid / WG_SIDE);
    let col0 = wid.x * TILE + 4u * (lid % WG_SIDE);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        let v = tile_row(t, r);
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + q;
            if (row < p.m && col < p.n) {
                c[out_base + row * p.n + col] = v[q];
            }
        }
    }
}

@compute @workgroup_size(WG_SIDE, WG_SIDE)
fn gemm_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = product_of_group(wid, lid);
    let out_base = (wid.z + p.z_offset) * p.m * p.n;
    let row0 = (wid.y + p.tile_row_offset) * TILE + 4u * (lid / WG_SIDE);
    let col0 = wid.x * TILE + 4u * (lid % WG_SIDE);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        let v = tile_row(t, r);
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + q;
            if (row < p.m && col < p.n) {
                c[out_base + row * p.n + col] = v[q] + side[col];
            }
        }
    }
}

@compute @workgroup_size(WG_SIDE, WG_SIDE)
fn gemm_bias_act(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = product_of_group(wid, lid);
    let row0 = (wid.y + p.tile_row_offset) * TILE + 4u * (lid / WG_SIDE);
    let col0 = wid.x * TILE + 4u * (lid % WG_SIDE);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        let v = tile_row(t, r);
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + q;
            if (row < p.m && col < p.n) {
                let i = row * p.n + col;
                let pre = v[q] + side[col];
                c[i] = pre;
                h[i] = activate(pre).x * dropout_scale(i);
            }
        }
    }
}

@compute @workgroup_size(WG_SIDE, WG_SIDE)
fn gemm_act_grad(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = product_of_group(wid, lid);
    let row0 = (wid.y + p.tile_row_offset) * TILE + 4u * (lid / WG_SIDE);
    let col0 = wid.x * TILE + 4u * (lid % WG_SIDE);
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + r;
        let v = tile_row(t, r);
        for (var q = 0u; q < 4u; q++) {
            let col = col0 + q;
            if (row < p.m && col < p.n) {
                let i = row * p.n + col;
                let s = dropout_scale(i);
                let act = activate(side[i]);
                h[i] = act.x * s;
                c[i] = v[q] * (s * act.y);
            }
        }
    }
}

// C[i] = Σ_s partial[s·len + i], len = batch·m·n; the partials are bound at `a` (binding 1;
// binding 2 is unused here), C at `c`. 2-d grid (`runtime::grid`).
@compute @workgroup_size(SUM_WG)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let len = p.batch * p.m * p.n;
    let i = (wid.x + wid.y * nwg.x) * SUM_WG + lid;
    if (i >= len) {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += a[s * len + i];
    }
    c[i] = sum;
}
