//! What the item level of a trained AMSRM (`model_options.item_attention = true`) makes of
//! inserted noise: for each test history, ⌈F·len⌉ random items are inserted exactly as
//! `seqrec evaluate --noise F --noise-seed S` does, and the item-level weights a_{n,j} of the
//! last position are averaged over the inserted items and over the real ones in the window.
//!
//!     cargo run --release --example item_weights -- RUN_DIR [F] [S]
//!
//! F defaults to 0.2, S to 1; the data path recorded in the run is used. Also prints the mean
//! weight by the item's number of training interactions (inserted items are mostly rare).

use seqrec::eval::noise::insert_noise;
use seqrec::models::amsrm::Amsrm;
use seqrec::train::{Experiment, sequence_input};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> seqrec::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || seqrec::Error::Invalid("usage: item_weights RUN_DIR [FRACTION] [SEED]".into());
    let run_dir = std::path::PathBuf::from(args.first().ok_or_else(usage)?);
    let fraction: f64 = match args.get(1) {
        Some(f) => f.parse().map_err(|_| usage())?,
        None => 0.2,
    };
    let seed: u64 = match args.get(2) {
        Some(s) => s.parse().map_err(|_| usage())?,
        None => 1,
    };
    let read = |name: &str| -> seqrec::Result<serde_json::Value> {
        let path = run_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| seqrec::Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| seqrec::Error::Invalid(format!("{name}: {e}")))
    };
    let config: seqrec::config::Config = serde_json::from_value(read("config.json")?)
        .map_err(|e| seqrec::Error::Invalid(format!("config.json: {e}")))?;
    if !config.model_options.item_attention {
        return Err(seqrec::Error::Invalid(
            "the run has no item-level attention".into(),
        ));
    }
    let source = read("data.json")?["source"]
        .as_str()
        .ok_or_else(|| seqrec::Error::Invalid("data.json has no source".into()))?
        .to_string();
    let dataset = seqrec::data::load::load(std::path::Path::new(&source))?;
    let exp = Experiment::prepare(&dataset, &config)?;
    let mut model = Amsrm::new(
        exp.num_items(),
        config.data.max_len,
        exp.side.clone(),
        &config.model_options,
        config.train.seed,
    )?;
    seqrec::checkpoint::load_params(
        &run_dir.join("best.safetensors"),
        seqrec::models::Model::params_mut(&mut model),
    )?;

    let mut popularity = vec![0usize; exp.num_items() + 1];
    for sequence in &exp.split.train {
        for &item in &sequence.items {
            popularity[item as usize] += 1;
        }
    }
    const BUCKETS: [usize; 4] = [10, 50, 200, usize::MAX];
    let bucket = |item: u32| BUCKETS.iter().position(|&b| popularity[item as usize] < b);
    // [inserted?][bucket] → (sum, count)
    let mut by_popularity = [[(0.0f64, 0usize); 4]; 2];

    let n = config.data.max_len;
    let (mut noise, mut real) = (Vec::new(), Vec::new());
    let (mut lower, mut with_noise) = (0usize, 0usize);
    for (case_index, case) in exp.split.test.iter().enumerate() {
        let (items, behaviours) = insert_noise(
            &case.history,
            &case.history_behaviours,
            fraction,
            exp.num_items(),
            seed,
            case_index,
        );
        // Which positions are inserted: the real items keep their order, so walk them.
        let mut next_real = 0;
        let is_noise: Vec<bool> = items
            .iter()
            .map(|&item| {
                let real_here = case.history.get(next_real) == Some(&item);
                if real_here {
                    next_real += 1;
                }
                !real_here
            })
            .collect();
        let keep = items.len().saturating_sub(n);
        let input = sequence_input(&[(case.user, &items[keep..], &behaviours[keep..])], n)?;
        let weights = model.item_weights(&input)?.expect("item attention is on");
        let weights = weights.to_vec();
        let window = &weights[n - (items.len() - keep)..];
        let (mut case_noise, mut case_real) = (Vec::new(), Vec::new());
        for ((&w, &inserted), &item) in window.iter().zip(&is_noise[keep..]).zip(&items[keep..]) {
            if let Some(b) = bucket(item) {
                let cell = &mut by_popularity[usize::from(inserted)][b];
                cell.0 += w as f64;
                cell.1 += 1;
            }
            if inserted {
                case_noise.push(w as f64);
            } else {
                case_real.push(w as f64);
            }
        }
        if !case_noise.is_empty() {
            with_noise += 1;
            if mean(&case_noise) < mean(&case_real) {
                lower += 1;
            }
        }
        noise.extend(case_noise);
        real.extend(case_real);
    }
    println!(
        "{}: noise {fraction} (seed {seed}): mean item-level weight of inserted items {:.4} ({}), \
         of real items {:.4} ({}); inserted items weigh less than real ones in {lower} of {} \
         histories",
        run_dir.display(),
        mean(&noise),
        noise.len(),
        mean(&real),
        real.len(),
        with_noise
    );
    for (inserted, name) in [(0, "real"), (1, "inserted")] {
        let cells: Vec<String> = ["<10", "10-49", "50-199", "200+"]
            .iter()
            .zip(&by_popularity[inserted])
            .map(|(range, &(sum, count))| {
                format!("{range}: {:.4} ({count})", sum / count.max(1) as f64)
            })
            .collect();
        println!(
            "  {name} items by training interactions: {}",
            cells.join(", ")
        );
    }
    Ok(())
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}
