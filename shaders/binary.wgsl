// Elementwise binary ops with numpy broadcasting (shapes aligned on the right), one thread per
// output element.
//
//   out[i] = op(a[offset_a(i)], b[offset_b(i)]),  op ∈ {+, −, ×, ÷} (OP_ADD..OP_DIV)
//
// `binary`: the host coalesces the output shape to at most 4 axes (dropping size-1 axes and
// merging neighbours along which both operands are contiguous) and passes, per axis, the
// output size and each operand's stride (0 along the axes where it is broadcast); the thread
// splits its flat index into coordinates and dots them with the strides.
// `binary_same`: both operands have the output's element count and layout (no broadcast).
//
// Backward (on the host side of the tape): d/da = dy·∂op/∂a summed over a's broadcast axes
// (`reduce_to_shape.wgsl`), likewise for b.
//
// Grid: `runtime::grid(n, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

const OP_ADD: u32 = 0u;
const OP_SUB: u32 = 1u;
const OP_MUL: u32 = 2u;
const OP_DIV: u32 = 3u;

struct Params {
    n: u32,
    op: u32,
    // Output sizes per coalesced axis, outermost first (1 on padding axes).
    size0: u32,
    size1: u32,
    size2: u32,
    size3: u32,
    // Strides of a and b per axis (0 where broadcast).
    a0: u32,
    a1: u32,
    a2: u32,
    a3: u32,
    b0: u32,
    b1: u32,
    b2: u32,
    b3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn apply(x: f32, y: f32) -> f32 {
    switch p.op {
        case OP_ADD: { return x + y; }
        case OP_SUB: { return x - y; }
        case OP_MUL: { return x * y; }
        default: { return x / y; }
    }
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    var rest = i;
    let c3 = rest % p.size3;
    rest /= p.size3;
    let c2 = rest % p.size2;
    rest /= p.size2;
    let c1 = rest % p.size1;
    let c0 = rest / p.size1;
    let ia = c0 * p.a0 + c1 * p.a1 + c2 * p.a2 + c3 * p.a3;
    let ib = c0 * p.b0 + c1 * p.b1 + c2 * p.b2 + c3 * p.b3;
    out[i] = apply(a[ia], b[ib]);
}

@compute @workgroup_size(WG)
fn binary_same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = apply(a[i], b[i]);
}
