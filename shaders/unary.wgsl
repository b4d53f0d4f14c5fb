// Elementwise nonlinearities, one thread per element, the same scalar math as
// `UnaryOp::forward` / `UnaryOp::derivative` on the CPU:
//
//   op        forward y                        derivative dy/dx (given x and y)
//   relu      max(x, 0)                        1 where x > 0, else 0
//   gelu      x·Φ(x), Φ(x) = (1 + erf(x/√2))/2 Φ(x) + x·e^{−x²/2}/√(2π)
//   sigmoid   1/(1 + e^{−x}) (overflow-free)   y(1 − y)
//   tanh      tanh x                           1 − y²
//   softplus  max(x, 0) + ln(1 + e^{−|x|})     σ(x)
//   exp       e^x                              y
//   log       ln x                             1/x
//
// `unary`: out = op(x). `unary_backward`: out = dy · op'(x, y). erf is the Numerical Recipes
// erfc fit of `backend::erf` (fractional error < 1.2e-7), evaluated in f32.
// Grid: `runtime::grid(n, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

const OP_RELU: u32 = 0u;
const OP_GELU: u32 = 1u;
const OP_SIGMOID: u32 = 2u;
const OP_TANH: u32 = 3u;
const OP_SOFTPLUS: u32 = 4u;
const OP_EXP: u32 = 5u;
const OP_LOG: u32 = 6u;

struct Params {
    n: u32,
    op: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// Backward only.
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

fn erf(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
        + t * (0.37409196
        + t * (0.09678418
        + t * (-0.18628806
        + t * (0.27886807
        + t * (-1.13520398
        + t * (1.48851587
        + t * (-0.82215223
        + t * 0.17087277))))))));
    let r = 1.0 - t * exp(poly);
    return select(-r, r, v >= 0.0);
}

fn normal_cdf(v: f32) -> f32 {
    return 0.5 * (1.0 + erf(v * 0.70710678118654752));
}

fn sigmoid(v: f32) -> f32 {
    if (v >= 0.0) {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

// ln(1 + e) for e ≥ 0, accurate when e is tiny (1 + e rounds; the ratio corrects it).
fn log1p(e: f32) -> f32 {
    let u = 1.0 + e;
    if (u == 1.0) {
        return e;
    }
    return log(u) * e / (u - 1.0);
}

fn forward(v: f32) -> f32 {
    switch p.op {
        case OP_RELU: { return max(v, 0.0); }
        case OP_GELU: { return v * normal_cdf(v); }
        case OP_SIGMOID: { return sigmoid(v); }
        // tanh(±15) is ±1 in f32; the clamp keeps e^{2x} inside tanh from overflowing.
        case OP_TANH: { return tanh(clamp(v, -15.0, 15.0)); }
        case OP_SOFTPLUS: { return max(v, 0.0) + log1p(exp(-abs(v))); }
        case OP_EXP: { return exp(v); }
        default: { return log(v); }
    }
}

fn derivative(v: f32, w: f32) -> f32 {
    switch p.op {
        case OP_RELU: { return select(0.0, 1.0, v > 0.0); }
        case OP_GELU: { return normal_cdf(v) + v * exp(-0.5 * v * v) * 0.39894228040143268; }
        case OP_SIGMOID: { return w * (1.0 - w); }
        case OP_TANH: { return 1.0 - w * w; }
        case OP_SOFTPLUS: { return sigmoid(v); }
        case OP_EXP: { return w; }
        default: { return 1.0 / v; }
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = forward(x[i]);
}

@compute @workgroup_size(WG)
fn unary_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = dy[i] * derivative(x[i], y[i]);
}
