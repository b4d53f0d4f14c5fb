//! Trains AMSRM on MovieLens-100K with its side information — user gender, age and
//! occupation, item genres and year, the rating level as the behaviour type — and prints the
//! full-ranking test metrics at K = 5, 10, 15, 20.
//!
//!     cargo run --release --example train_amsrm [-- --data PATH] [--set train.epochs=50]
//!         [--device auto|cpu|gpu]
//!
//! The data is found through `--data PATH` or the `SEQREC_DATA` folder (`ml-100k` in it).
//! The device: `--device`, else `SEQREC_DEVICE`, else auto (a hardware GPU if there is one).

use seqrec::config::Config;
use seqrec::train::{Experiment, TrainOptions, train};

fn main() {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { seqrec::backend::gpu::silence_device_select_layer() };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> seqrec::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut data_arg = None;
    let mut overrides = Vec::new();
    let mut device = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data" if i + 1 < args.len() => {
                data_arg = Some(args[i + 1].clone());
                i += 2;
            }
            "--device" if i + 1 < args.len() => {
                device = Some(args[i + 1].clone());
                i += 2;
            }
            "--set" if i + 1 < args.len() => {
                overrides.push(args[i + 1].clone());
                i += 2;
            }
            other => {
                return Err(seqrec::Error::Invalid(format!(
                    "unknown argument {other:?}; use --data PATH, --set key=value and --device auto|cpu|gpu"
                )));
            }
        }
    }
    let path =
        seqrec::data::find::resolve_data_path(Some(data_arg.as_deref().unwrap_or("ml-100k")))?;
    let dataset = seqrec::data::load::load(&path)?;
    let config = Config::from_toml_with_overrides("model = \"amsrm\"\n", &overrides)?;
    let requested = seqrec::backend::requested_device(device.as_deref());
    let (device, device_line) = seqrec::backend::select_device(&requested)?;
    eprintln!(
        "seqrec: AMSRM on {} ({} interactions); {device_line}",
        path.display(),
        dataset.interactions.len(),
    );
    let exp = Experiment::prepare(&dataset, &config)?;
    let run_dir = std::env::temp_dir().join(format!("seqrec-train-amsrm-{}", std::process::id()));
    let mut model = exp.build_model()?;
    model.params_mut().to_device(device);
    let report = train(
        &exp,
        model.as_mut(),
        &run_dir,
        &TrainOptions {
            progress: true,
            ..Default::default()
        },
    )?;
    let test = report
        .test
        .as_ref()
        .expect("a finished run has a test report");
    println!(
        "AMSRM on {}: {} parameters, {} epochs (best {}), {:.2} s/epoch",
        exp.dataset_name,
        report.parameters,
        report.epochs,
        report.best_epoch,
        report.seconds_per_epoch
    );
    println!("{}", test.to_markdown_table());
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(())
}
