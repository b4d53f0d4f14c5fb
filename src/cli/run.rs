//! `seqrec train | evaluate | recommend | compare`.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{CompareArgs, ConfigArgs, EvaluateArgs, RecommendArgs, TrainArgs, print_json};
use crate::checkpoint::load_json;
use crate::config::Config;
use crate::data::{find::resolve_data_path, load::load};
use crate::error::{Error, Result};
use crate::eval::{EvalReport, top_k};
use crate::train::{
    DataInfo, Experiment, INTERRUPTED, TrainOptions, TrainReport, evaluate_cases, open_run,
    score_rows, train as train_model,
};

/// The configuration from --config, --model and --set.
fn config_from(args: &ConfigArgs, model: Option<&str>) -> Result<Config> {
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        None => String::new(),
    };
    let mut sets = Vec::new();
    if let Some(model) = model {
        sets.push(format!("model=\"{model}\""));
    }
    sets.extend(args.set.iter().cloned());
    Config::from_toml_with_overrides(&text, &sets)
}

/// Ctrl-C: finish the current step, write a checkpoint, stop.
fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: finishing the step and writing a checkpoint (Ctrl-C again to quit now)"
        );
    });
}

pub fn train(args: TrainArgs, json: bool) -> Result<()> {
    let requested = crate::backend::requested_device(args.device.as_deref());
    let (device, device_line) = crate::backend::select_device(&requested)?;
    let (config, data_arg) = if args.resume {
        let config: Config = load_json(&args.out.join("config.json"))?;
        let info: DataInfo = load_json(&args.out.join("data.json"))?;
        (
            config,
            args.config
                .data
                .clone()
                .unwrap_or_else(|| info.source.display().to_string()),
        )
    } else {
        let config = config_from(&args.config, args.model.as_deref())?;
        (config, args.config.data.clone().ok_or_else(|| Error::Invalid("--data PATH is required (a folder, a file, or a data set name under $SEQREC_DATA)".into()))?)
    };
    let path = resolve_data_path(Some(&data_arg))?;
    let dataset = load(&path)?;
    let exp = Experiment::prepare(&dataset, &config)?;
    let mut model = exp.build_model()?;
    model.params_mut().to_device(device);
    if !json {
        eprintln!(
            "seqrec: {} on {} ({} users, {} items), {} parameters; {device_line}",
            config.model,
            path.display(),
            exp.num_users(),
            exp.num_items(),
            model.params().num_scalars(),
        );
    }
    install_interrupt_handler();
    let report = train_model(
        &exp,
        model.as_mut(),
        &args.out,
        &TrainOptions {
            resume: args.resume,
            progress: !json,
            max_steps: None,
        },
    )?;
    print_train_report(&report, &args.out, json)
}

fn print_train_report(report: &TrainReport, out: &Path, json: bool) -> Result<()> {
    if json {
        return print_json(report);
    }
    match &report.test {
        Some(test) => {
            println!(
                "{} on {}: {} epochs (best {} with validation NDCG@10 {:.4}), {:.2} s/epoch, run in {}",
                report.model,
                report.dataset,
                report.epochs,
                report.best_epoch,
                report.best_valid_ndcg10,
                report.seconds_per_epoch,
                out.display()
            );
            if !report.cold_start.is_empty() {
                println!("\nwarm users and items:");
            }
            println!("{}", test.to_markdown_table());
            for group in &report.cold_start {
                println!("\n{} ({} cases):", group.group, group.cases);
                println!("{}", group.test.to_markdown_table());
            }
        }
        None => println!(
            "interrupted after {} epochs; continue with: seqrec train --out {} --resume",
            report.epochs,
            out.display()
        ),
    }
    Ok(())
}

pub fn evaluate(args: EvaluateArgs, json: bool) -> Result<()> {
    let (mut exp, model) = open_run(&args.run, args.data.as_deref())?;
    if args.keep_history {
        exp.config.eval.exclude_history = false;
    }
    if args.sampled.is_some() {
        exp.config.eval.sampled_negatives = args.sampled;
    }
    if let Some(noise) = args.noise {
        exp.config.eval.noise = noise;
        exp.config.validate()?;
    }
    if let Some(seed) = args.noise_seed {
        // The training is over: the run's seed now only seeds the evaluation's draws.
        exp.config.train.seed = seed;
    }
    let report = evaluate_cases(
        model.as_ref(),
        &exp.split.test,
        exp.num_items(),
        &exp.config,
    )?;
    let cold_start = exp.evaluate_cold_groups(model.as_ref())?;
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            model: &'a str,
            dataset: &'a str,
            test: &'a EvalReport,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            cold_start: &'a [crate::train::GroupReport],
        }
        return print_json(&Out {
            model: model.name(),
            dataset: &exp.dataset_name,
            test: &report,
            cold_start: &cold_start,
        });
    }
    println!("{} on {} (test split):", model.name(), exp.dataset_name);
    println!("{}", report.to_markdown_table());
    for group in &cold_start {
        println!("\n{} ({} cases):", group.group, group.cases);
        println!("{}", group.test.to_markdown_table());
    }
    Ok(())
}

#[derive(Serialize)]
struct Recommendation {
    item: String,
    score: f32,
}

pub fn recommend(args: RecommendArgs, json: bool) -> Result<()> {
    let (exp, model) = open_run(&args.run, args.data.as_deref())?;
    let (user, history, behaviours, who) = match (&args.user, &args.items) {
        (Some(name), None) => {
            let user = exp
                .user_names
                .iter()
                .position(|n| n == name)
                .filter(|&u| u > 0)
                .ok_or_else(|| {
                    Error::Invalid(format!("user {name:?} is not in the data of this run"))
                })? as u32;
            let steps = &exp.sequences.by_user[user as usize];
            (
                user,
                steps.iter().map(|s| s.item).collect::<Vec<_>>(),
                steps.iter().map(|s| s.behaviour).collect::<Vec<_>>(),
                format!("user {name}"),
            )
        }
        (None, Some(items)) => {
            let ids = items
                .iter()
                .map(|name| {
                    exp.item_names
                        .iter()
                        .position(|n| n == name.trim())
                        .filter(|&i| i > 0)
                        .map(|i| i as u32)
                        .ok_or_else(|| {
                            Error::Invalid(format!("item {name:?} is not in the data of this run"))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let n = ids.len();
            (0, ids, vec![0; n], "an anonymous sequence".to_string())
        }
        _ => {
            return Err(Error::Invalid(
                "give either --user ID or --items ID,ID,...".into(),
            ));
        }
    };
    let scores = score_rows(
        model.as_ref(),
        &[(user, &history, &behaviours)],
        exp.config.data.max_len,
    )?;
    let best = top_k(&scores, args.k, &history);
    let list: Vec<Recommendation> = best
        .iter()
        .map(|&(item, score)| Recommendation {
            item: exp.item_names[item as usize].clone(),
            score,
        })
        .collect();
    if json {
        return print_json(&list);
    }
    println!(
        "top {} for {who} ({} items seen, excluded):",
        args.k,
        history.len()
    );
    for (rank, r) in list.iter().enumerate() {
        println!("{:>3}. item {:<12} score {:.4}", rank + 1, r.item, r.score);
    }
    Ok(())
}

/// One model's test metrics over seeds.
#[derive(Serialize)]
struct CompareRow {
    model: String,
    seeds: Vec<u64>,
    /// Per K: (precision, recall, ndcg, hit rate) as (mean, std) over seeds.
    at_k: Vec<CompareAtK>,
    mrr: (f64, f64),
    seconds_per_epoch: (f64, f64),
    epochs: Vec<usize>,
}

#[derive(Serialize)]
struct CompareAtK {
    k: usize,
    precision: (f64, f64),
    recall: (f64, f64),
    ndcg: (f64, f64),
    hit_rate: (f64, f64),
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn compare(args: CompareArgs, json: bool) -> Result<()> {
    let data_arg = args
        .config
        .data
        .clone()
        .ok_or_else(|| Error::Invalid("--data PATH is required".into()))?;
    let path = resolve_data_path(Some(&data_arg))?;
    let dataset = load(&path)?;
    install_interrupt_handler();
    let mut rows = Vec::new();
    let mut protocol = String::new();
    for model_name in &args.models {
        let mut reports = Vec::new();
        for &seed in &args.seeds {
            let mut config = config_from(&args.config, Some(model_name))?;
            config.train.seed = seed;
            let exp = Experiment::prepare(&dataset, &config)?;
            let mut model = exp.build_model()?;
            let out = args.out.join(format!("{model_name}-seed{seed}"));
            if !json {
                eprintln!("compare: {model_name}, seed {seed} → {}", out.display());
            }
            let report = train_model(
                &exp,
                model.as_mut(),
                &out,
                &TrainOptions {
                    progress: !json,
                    ..Default::default()
                },
            )?;
            if !report.finished {
                return Err(Error::Invalid(format!(
                    "interrupted while training {model_name}; its run is in {}",
                    out.display()
                )));
            }
            reports.push(report);
        }
        let tests: Vec<&EvalReport> = reports.iter().filter_map(|r| r.test.as_ref()).collect();
        protocol = tests[0].protocol.description.clone();
        let at_k = tests[0]
            .at_k
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let pick = |f: fn(&crate::eval::MetricsAtK) -> f64| {
                    mean_std(&tests.iter().map(|t| f(&t.at_k[i])).collect::<Vec<_>>())
                };
                CompareAtK {
                    k: m.k,
                    precision: pick(|m| m.precision),
                    recall: pick(|m| m.recall),
                    ndcg: pick(|m| m.ndcg),
                    hit_rate: pick(|m| m.hit_rate),
                }
            })
            .collect();
        rows.push(CompareRow {
            model: model_name.clone(),
            seeds: args.seeds.clone(),
            at_k,
            mrr: mean_std(&tests.iter().map(|t| t.mrr).collect::<Vec<_>>()),
            seconds_per_epoch: mean_std(
                &reports
                    .iter()
                    .map(|r| r.seconds_per_epoch)
                    .collect::<Vec<_>>(),
            ),
            epochs: reports.iter().map(|r| r.epochs).collect(),
        });
    }
    let markdown = compare_markdown(&rows, &dataset.name, &protocol);
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    crate::checkpoint::write_atomic(&args.out.join("compare.md"), markdown.as_bytes())?;
    crate::checkpoint::save_json(&args.out.join("compare.json"), &rows)?;
    plot_ndcg(&rows, &args.out.join("compare.svg"), &dataset.name)?;
    if json {
        return print_json(&rows);
    }
    println!("{markdown}");
    println!(
        "written: {}/compare.md, compare.json, compare.svg",
        args.out.display()
    );
    Ok(())
}

fn compare_markdown(rows: &[CompareRow], dataset: &str, protocol: &str) -> String {
    use std::fmt::Write;
    let mut s =
        format!("Test metrics on {dataset}, mean ± std over seeds. Protocol: {protocol}.\n\n");
    let ks: Vec<usize> = rows
        .first()
        .map(|r| r.at_k.iter().map(|m| m.k).collect())
        .unwrap_or_default();
    let _ = write!(s, "| model |");
    for metric in ["P", "R", "NDCG"] {
        for k in &ks {
            let _ = write!(s, " {metric}@{k} |");
        }
    }
    let _ = writeln!(s, " MRR | s/epoch |");
    let _ = writeln!(s, "|---|{}", "---:|".repeat(3 * ks.len() + 2));
    for row in rows {
        let _ = write!(s, "| {} |", row.model);
        for pick in [
            |m: &CompareAtK| m.precision,
            |m: &CompareAtK| m.recall,
            |m: &CompareAtK| m.ndcg,
        ] {
            for m in &row.at_k {
                let (mean, std) = pick(m);
                let _ = write!(s, " {mean:.4} ± {std:.4} |");
            }
        }
        let _ = writeln!(
            s,
            " {:.4} ± {:.4} | {:.2} |",
            row.mrr.0, row.mrr.1, row.seconds_per_epoch.0
        );
    }
    s
}

/// NDCG@K against K, one line per model.
fn plot_ndcg(rows: &[CompareRow], path: &Path, dataset: &str) -> Result<()> {
    use plotters::prelude::*;
    let max_k = rows
        .iter()
        .flat_map(|r| r.at_k.iter().map(|m| m.k))
        .max()
        .unwrap_or(20) as f64;
    let max_y = rows
        .iter()
        .flat_map(|r| r.at_k.iter().map(|m| m.ndcg.0))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    let plot_error = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
    {
        let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("NDCG@K on {dataset}"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..max_k + 1.0, 0.0..max_y)
            .map_err(|e| plot_error(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("K")
            .y_desc("NDCG@K")
            .draw()
            .map_err(|e| plot_error(e.to_string()))?;
        for (i, row) in rows.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = row.at_k.iter().map(|m| (m.k as f64, m.ndcg.0)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| plot_error(e.to_string()))?
                .label(row.model.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| plot_error(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| plot_error(e.to_string()))?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    Ok(())
}
