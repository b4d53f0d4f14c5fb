// Gradient accumulation in place, one thread per element:
//
//   sum[i] ← sum[i] + x[i]
//
// Used only when no other tensor shares `sum`'s buffer; otherwise the host runs
// `binary.wgsl::binary_same` into a new buffer. Grid: `runtime::grid(n, WG)`.

const WG: u32 = 256u;

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sum: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn add_assign(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    sum[i] = sum[i] + x[i];
}
