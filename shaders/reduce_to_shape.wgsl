// Sums over broadcast axes (the backward of broadcasting): x of shape X is summed down to a
// shape S that broadcasts to X.
//
//   out[o] = Σ_r x[offset(o, r)]
//
// The host groups X's axes into kept runs (S = X there) and reduced runs (S = 1), merging
// neighbours of the same kind; with rank ≤ 4 there are at most two of each. An output index
// o splits into (o1, o0) over the kept runs (sizes ·, kept0) and a reduced index r into
// (r1, r0) over the reduced runs (sizes ·, red0), innermost last:
//
//   offset(o, r) = o0·kstride0 + o1·kstride1 + r0·rstride0 + r1·rstride1
//
// The reduced range [0, reduced) may be cut into `splits` chunks of `chunk` elements; chunk g
// of output o is written to out[o·out_o + g·out_g], and a second dispatch sums the partials.
// Every sum runs in a fixed order, so results do not depend on scheduling.
//
// Two schemes, picked by the host from the layout:
// - `reduce_columns`: one thread per (output, chunk), looping over its chunk. Consecutive
//   threads take consecutive outputs, so reads coalesce when the innermost axis is kept
//   (bias gradients [N·d] → [d]). Grid: `runtime::grid(n_out·splits, WG)`.
// - `reduce_rows`: one workgroup per (output, chunk); its WG threads stride over the chunk
//   and finish with a tree reduction in workgroup memory. Reads coalesce when the innermost
//   axis is reduced (row sums [N, d] → [N, 1], full sums). Grid: `runtime::grid(n_out·splits, 1)`.

const WG: u32 = 256u;

struct Params {
    n_out: u32,
    splits: u32,
    chunk: u32,
    reduced: u32,
    kept0: u32,
    kstride0: u32,
    kstride1: u32,
    red0: u32,
    rstride0: u32,
    rstride1: u32,
    out_o: u32,
    out_g: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

fn kept_offset(o: u32) -> u32 {
    return (o % p.kept0) * p.kstride0 + (o / p.kept0) * p.kstride1;
}

@compute @workgroup_size(WG)
fn reduce_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.n_out * p.splits) {
        return;
    }
    let o = t % p.n_out;
    let g = t / p.n_out;
    let start = g * p.chunk;
    let end = min(start + p.chunk, p.reduced);
    let base = kept_offset(o);
    // (r1, r0) of r, advanced incrementally.
    var r0 = start % p.red0;
    var r1 = start / p.red0;
    var acc = 0.0;
    for (var r = start; r < end; r++) {
        acc += x[base + r0 * p.rstride0 + r1 * p.rstride1];
        r0 += 1u;
        if (r0 == p.red0) {
            r0 = 0u;
            r1 += 1u;
        }
    }
    out[o * p.out_o + g * p.out_g] = acc;
}

@compute @workgroup_size(WG)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    if (group >= p.n_out * p.splits) {
        return;
    }
    let o = group / p.splits;
    let g = group % p.splits;
    let start = g * p.chunk;
    let end = min(start + p.chunk, p.reduced);
    let base = kept_offset(o);
    var acc = 0.0;
    for (var r = start + lid; r < end; r += WG) {
        acc += x[base + (r % p.red0) * p.rstride0 + (r / p.red0) * p.rstride1];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[o * p.out_o + g * p.out_g] = partial[0];
    }
}
