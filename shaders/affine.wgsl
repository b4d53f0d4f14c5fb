// The affine map, one thread per element (also `scale`, with β = 0):
//
//   out = α·x + β;   backward: dx = α·dy (another affine map).
//
// Grid: `runtime::grid(n, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = p.alpha * x[i] + p.beta;
}
