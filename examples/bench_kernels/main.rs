//! Kernel micro-benchmarks: times each kernel case per call (after a warm-up) and reports the
//! median, p10 and p90, plus GFLOP/s where the case knows its flop count.
//!
//! Usage: `cargo run --release --example bench_kernels -- [--json] [--filter SUBSTRING]
//!         [--iters N] [--threads N] [--device cpu|gpu]`
//!
//! With `--device gpu` the cases run through the GPU backend (inputs uploaded once, outside
//! the timing) and each timed call ends by waiting for the GPU.
//!
//! Every kernel family adds a module exposing `pub fn cases() -> Vec<Case>`; `all_cases` below
//! collects them. Cases run inside a rayon pool of `--threads` threads (default: all cores), so
//! the kernels' own rayon parallelism uses exactly that many threads.

mod attention;
mod gru_ffn;
mod peak;
mod sgemm;
mod train_step;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use seqrec::Device;

static DEVICE: OnceLock<Device> = OnceLock::new();

/// The device the cases run on (`--device`, default cpu).
pub fn device() -> Device {
    *DEVICE.get().unwrap_or(&Device::Cpu)
}

/// One benchmarked call. `run` does the work once; `flops` is the floating-point operation
/// count of one call, when it is known, to report GFLOP/s.
pub struct Case {
    pub name: String,
    pub flops: Option<f64>,
    pub run: Box<dyn FnMut()>,
}

/// Every family's cases. Add a family here: `cases.extend(family::cases());`.
fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(peak::cases());
    cases.extend(sgemm::cases());
    cases.extend(attention::cases());
    cases.extend(gru_ffn::cases());
    cases.extend(train_step::cases());
    cases.extend(train_step::loss_cases());
    cases
}

struct Options {
    json: bool,
    filter: Option<String>,
    iters: Option<usize>,
    threads: usize,
    device: Device,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        json: false,
        filter: None,
        iters: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        device: Device::Cpu,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--json" => options.json = true,
            "--filter" => options.filter = Some(value("--filter")?),
            "--iters" => {
                let n = value("--iters")?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("--iters: not a count: {n}"))?;
                options.iters = Some(n.max(1));
            }
            "--threads" => {
                let n = value("--threads")?;
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("--threads: not a count: {n}"))?;
                options.threads = n.max(1);
            }
            "--device" => {
                options.device = match value("--device")?.as_str() {
                    "cpu" => Device::Cpu,
                    "gpu" => Device::Gpu,
                    other => return Err(format!("--device: expected cpu or gpu, got {other}")),
                };
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; flags: --json --filter S --iters N --threads N \
                     --device cpu|gpu"
                ));
            }
        }
    }
    Ok(options)
}

/// The CPU's model name from /proc/cpuinfo (Linux), or "unknown".
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

struct Timing {
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    iters: usize,
}

/// Warms up (at least 3 calls and 0.2 s), then times `iters` calls one by one. Without an
/// explicit count, runs as many calls as fit in about one second, between 10 and 200.
fn time_case(case: &mut Case, iters: Option<usize>) -> Timing {
    let warm_start = Instant::now();
    let mut warm_calls = 0;
    while warm_calls < 3 || warm_start.elapsed() < Duration::from_millis(200) {
        (case.run)();
        seqrec::backend::synchronize(device());
        warm_calls += 1;
    }
    let per_call = warm_start.elapsed().as_secs_f64() / warm_calls as f64;
    let iters = iters.unwrap_or_else(|| ((1.0 / per_call) as usize).clamp(10, 200));

    let mut times_ms: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            (case.run)();
            seqrec::backend::synchronize(device());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times_ms.sort_by(f64::total_cmp);
    let at = |q: f64| times_ms[((q * iters as f64) as usize).min(iters - 1)];
    let median_ms = if iters % 2 == 1 {
        times_ms[iters / 2]
    } else {
        0.5 * (times_ms[iters / 2 - 1] + times_ms[iters / 2])
    };
    Timing {
        median_ms,
        p10_ms: at(0.1),
        p90_ms: at(0.9),
        iters,
    }
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bench_kernels: {message}");
            std::process::exit(2);
        }
    };
    let device_name = match options.device {
        Device::Cpu => "cpu".to_string(),
        Device::Gpu => match seqrec::backend::gpu::backend() {
            Ok(gpu) => {
                use seqrec::backend::Backend;
                gpu.name()
            }
            Err(why) => {
                eprintln!("bench_kernels: --device gpu: {why}");
                std::process::exit(1);
            }
        },
    };
    DEVICE.set(options.device).expect("set once");
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
    {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!(
                "bench_kernels: cannot build a pool of {} threads: {error}",
                options.threads
            );
            std::process::exit(1);
        }
    };

    // Build and run the cases inside the pool so that every rayon call sees its size.
    pool.install(|| {
        let mut kernels = serde_json::Map::new();
        if !options.json {
            println!(
                "{} threads, {}, {device_name}\n{:<44} {:>10} {:>10} {:>10} {:>6} {:>9}",
                options.threads,
                cpu_name(),
                "kernel",
                "median ms",
                "p10 ms",
                "p90 ms",
                "iters",
                "GFLOP/s"
            );
        }
        for mut case in all_cases() {
            if let Some(filter) = &options.filter
                && !case.name.contains(filter.as_str())
            {
                continue;
            }
            let timing = time_case(&mut case, options.iters);
            let gflops = case
                .flops
                .map(|flops| flops / (timing.median_ms * 1e-3) / 1e9);
            if options.json {
                let mut entry = serde_json::json!({
                    "median_ms": timing.median_ms,
                    "p10_ms": timing.p10_ms,
                    "p90_ms": timing.p90_ms,
                    "iters": timing.iters,
                });
                if let Some(gflops) = gflops {
                    entry["gflops"] = gflops.into();
                }
                kernels.insert(case.name.clone(), entry);
            } else {
                let gflops = gflops.map_or(String::from("-"), |g| format!("{g:.1}"));
                println!(
                    "{:<44} {:>10.3} {:>10.3} {:>10.3} {:>6} {:>9}",
                    case.name, timing.median_ms, timing.p10_ms, timing.p90_ms, timing.iters, gflops
                );
            }
        }
        if options.json {
            let report = serde_json::json!({
                "threads": options.threads,
                "cpu": cpu_name(),
                "device": device_name,
                "kernels": kernels,
            });
            println!("{report}");
        }
    });
}
