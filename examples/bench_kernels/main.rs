//! Kernel benchmarks with one machine-readable result:
//!
//!     cargo run --release --example bench_kernels -- --json [--filter NAME] [--iters N] [--threads N]
//!
//! prints one JSON object: `{ "threads", "cpu", "kernels": { name: { median_ms, p10_ms, p90_ms,
//! iters, gflops } } }`. Without `--json`, a table. Shapes follow `shared/peers/torch_micro.py`
//! so that every figure has a PyTorch counterpart measured the same way (median of per-call
//! times after warm-up).

mod attention;
mod gru_ffn;
mod sgemm;
mod train_step;

use std::time::Instant;

/// One benchmark: a closure that runs the kernel once.
pub struct Case {
    pub name: String,
    /// Floating-point operations of one run, when meaningful.
    pub flops: Option<f64>,
    pub run: Box<dyn FnMut()>,
}

struct Options {
    json: bool,
    filter: Option<String>,
    iters: usize,
    threads: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        json: false,
        filter: None,
        iters: 30,
        threads: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--json" => o.json = true,
            "--filter" => o.filter = Some(value("--filter")?),
            "--iters" => {
                o.iters = value("--iters")?
                    .parse()
                    .map_err(|e| format!("--iters: {e}"))?
            }
            "--threads" => {
                o.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--bench" => {} // passed by `cargo bench`-style runners; ignored
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --json, --filter NAME, --iters N, --threads N)"
                ));
            }
        }
    }
    Ok(o)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if options.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .build_global()
            .expect("the global pool is built once");
    }
    let mut cases = Vec::new();
    cases.extend(sgemm::cases());
    cases.extend(attention::cases());
    cases.extend(gru_ffn::cases());
    cases.extend(train_step::cases());
    cases.extend(train_step::loss_cases());

    let mut results = serde_json::Map::new();
    if !options.json {
        println!(
            "{:<40} {:>10} {:>10} {:>10} {:>9}",
            "kernel", "median ms", "p10 ms", "p90 ms", "GFLOP/s"
        );
    }
    for mut case in cases {
        if options
            .filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        for _ in 0..3 {
            (case.run)();
        }
        let mut times: Vec<f64> = (0..options.iters.max(1))
            .map(|_| {
                let start = Instant::now();
                (case.run)();
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
        let median = pick(0.5);
        let gflops = case.flops.map(|f| f / (median * 1e-3) / 1e9);
        if !options.json {
            println!(
                "{:<40} {:>10.3} {:>10.3} {:>10.3} {:>9}",
                case.name,
                median,
                pick(0.1),
                pick(0.9),
                gflops.map(|g| format!("{g:.1}")).unwrap_or_default()
            );
        }
        let mut entry = serde_json::json!({ "median_ms": median, "p10_ms": pick(0.1), "p90_ms": pick(0.9), "iters": times.len() });
        if let Some(g) = gflops {
            entry["gflops"] = serde_json::json!(g);
        }
        results.insert(case.name, entry);
    }
    if options.json {
        let out = serde_json::json!({ "threads": rayon::current_num_threads(), "cpu": cpu_name(), "kernels": results });
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
    }
}
