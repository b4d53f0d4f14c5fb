// im2col and col2im for convolution as GEMM, one thread per output element.
//
// Geometry: image x [B, C, H, W]; kernel KH×KW, stride (SH, SW), zero padding (PH, PW),
// dilation (DH, DW); output positions OH×OW = P; columns [B, P, K] with K = C·KH·KW, column
// index j = (c·KH + ky)·KW + kx, row p = py·OW + px.
//
// `unfold` (forward, im2col):
//   cols[n, p, j] = x[n, c, py·SH + ky·DH − PH, px·SW + kx·DW − PW]   (0 outside the image)
// One thread per column entry; consecutive threads write consecutive entries.
//
// `fold` (backward, col2im): the sum of every column entry that `unfold` read from a pixel,
//   image[n, c, y, x] = Σ_{ky, kx} cols[n, (py, px), (c, ky, kx)]
//     over py = (y + PH − ky·DH)/SH, px = (x + PW − kx·DW)/SW where the division is exact
//     and 0 ≤ py < OH, 0 ≤ px < OW.
// A gather: one thread per image pixel, so no atomics. ky and kx run downwards so that the
// terms are added in increasing p, the CPU's order.
//
// Grid: `runtime::grid(n, WG)`, flat workgroup index wid.x + wid.y·nwg.x.

const WG: u32 = 256u;

struct Params {
    n: u32,
    channels: u32,
    height: u32,
    width: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dilation_h: u32,
    dilation_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// unfold: the image; fold: the columns.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// unfold: the columns; fold: the image.
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn unfold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.n) {
        return;
    }
    let window = p.kernel_h * p.kernel_w;
    let k = p.channels * window;
    let positions = p.out_h * p.out_w;
    let j = t % k;
    let q = t / k;
    let pos = q % positions;
    let image = q / positions;
    let c = j / window;
    let ky = (j / p.kernel_w) % p.kernel_h;
    let kx = j % p.kernel_w;
    let y = i32((pos / p.out_w) * p.stride_h + ky * p.dilation_h) - i32(p.pad_h);
    let x = i32((pos % p.out_w) * p.stride_w + kx * p.dilation_w) - i32(p.pad_w);
    var v = 0.0;
    if (y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width)) {
        v = src[((image * p.channels + c) * p.height + u32(y)) * p.width + u32(x)];
    }
    dst[t] = v;
}

@compute @workgroup_size(WG)
fn fold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.n) {
        return;
    }
    let x = t % p.width;
    let y = (t / p.width) % p.height;
    let c = (t / (p.width * p.height)) % p.channels;
    let image = t / (p.width * p.height * p.channels);
    let k = p.channels * p.kernel_h * p.kernel_w;
    let base = image * p.out_h * p.out_w * k;
    var acc = 0.0;
    for (var ky = i32(p.kernel_h) - 1; ky >= 0; ky--) {
        let sy = i32(y + p.pad_h) - ky * i32(p.dilation_h);
        if (sy < 0 || sy % i32(p.stride_h) != 0) {
            continue;
        }
        let py = u32(sy) / p.stride_h;
        if (py >= p.out_h) {
            continue;
        }
        for (var kx = i32(p.kernel_w) - 1; kx >= 0; kx--) {
            let sx = i32(x + p.pad_w) - kx * i32(p.dilation_w);
            if (sx < 0 || sx % i32(p.stride_w) != 0) {
                continue;
            }
            let px = u32(sx) / p.stride_w;
            if (px >= p.out_w) {
                continue;
            }
            let j = (c * p.kernel_h + u32(ky)) * p.kernel_w + u32(kx);
            acc += src[base + (py * p.out_w + px) * k + j];
        }
    }
    dst[t] = acc;
}
