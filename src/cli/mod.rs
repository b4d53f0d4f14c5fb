//! The `seqrec` command line: train, evaluate, recommend, compare, data stats, data fetch.
//! Every command prints a human-readable result, or one JSON object with `--json`. Errors go
//! to stderr as `error: ...` with exit code 1 (2 for usage errors); user input never panics.

mod data;
mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seqrec",
    version,
    about = "Sequential recommendation: train, evaluate and serve next-item models"
)]
struct Cli {
    /// Print one JSON object on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Threads for the CPU backend (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and evaluate it on the test split.
    Train(TrainArgs),
    /// Evaluate a trained run on its test split.
    Evaluate(EvaluateArgs),
    /// Recommend items for a known user or for an anonymous sequence.
    Recommend(RecommendArgs),
    /// Train several models on one data set and tabulate and plot their metrics.
    Compare(CompareArgs),
    /// Data set tools.
    #[command(subcommand)]
    Data(DataCommand),
}

/// Where the data is and how to configure a run.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// A data folder or file, or a data set name under $SEQREC_DATA (e.g. ml-100k).
    #[arg(long)]
    data: Option<String>,
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set train.lr=0.001 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
pub struct TrainArgs {
    /// The model: amsrm, sasrec, caser, bprmf, attrec, the survey's pop, itemknn, userknn,
    /// mf, fpmc, fossil, hmm, gru4rec, nextitnet, stamp, bert4rec (an unknown name lists
    /// those this build has).
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
    /// The run folder for checkpoints and reports.
    #[arg(long)]
    out: PathBuf,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    resume: bool,
    /// auto (a hardware GPU if there is one, else the CPU), cpu or gpu; default: the
    /// SEQREC_DEVICE environment variable, else auto.
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
pub struct EvaluateArgs {
    #[arg(long)]
    run: PathBuf,
    /// Use this data instead of the path recorded in the run.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep the user's history in the ranking (it is excluded by default).
    #[arg(long)]
    keep_history: bool,
    /// Sampled evaluation against this many random negatives (labelled as such).
    #[arg(long)]
    sampled: Option<usize>,
    /// Insert ⌈NOISE·len⌉ random items into each test history (a robustness check), in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    noise: Option<f64>,
    /// Seed of the noise draw (default: the run's train.seed), to average several draws.
    #[arg(long, requires = "noise")]
    noise_seed: Option<u64>,
}

#[derive(Args)]
pub struct RecommendArgs {
    #[arg(long)]
    run: PathBuf,
    /// A user id as written in the data.
    #[arg(long, conflicts_with = "items")]
    user: Option<String>,
    /// An anonymous sequence of item ids as written in the data, oldest first: 12,55,7.
    #[arg(long, value_delimiter = ',')]
    items: Option<Vec<String>>,
    #[arg(long, default_value_t = 10)]
    k: usize,
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Models to compare, e.g. amsrm,sasrec,caser.
    #[arg(long, value_delimiter = ',', required = true)]
    models: Vec<String>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Seeds; each model is trained once per seed and reported as mean ± std.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    seeds: Vec<u64>,
    /// Folder for the runs, the table (compare.md, compare.json) and the plot (compare.svg).
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Users, items, interactions, sparsity, sequence lengths, side-information fields.
    Stats {
        #[arg(long)]
        data: Option<String>,
    },
    /// Download a public data set from its publisher (ml-100k, ml-1m) into the cache folder
    /// ($SEQREC_DATA, else ~/.cache/seqrec), checksum-verified.
    Fetch {
        name: String,
        /// Cache folder (default: $SEQREC_DATA, then $XDG_CACHE_HOME/seqrec, ~/.cache/seqrec).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Base URL of the publisher's files (default: GroupLens).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if let Some(threads) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
    {
        eprintln!("error: --threads: {e}");
        return 2;
    }
    let result = match cli.command {
        Command::Train(args) => run::train(args, cli.json),
        Command::Evaluate(args) => run::evaluate(args, cli.json),
        Command::Recommend(args) => run::recommend(args, cli.json),
        Command::Compare(args) => run::compare(args, cli.json),
        Command::Data(DataCommand::Stats { data }) => data::stats(data.as_deref(), cli.json),
        Command::Data(DataCommand::Fetch { name, cache, url }) => {
            data::fetch(&name, cache.as_deref(), url.as_deref(), cli.json)
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Prints a value as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Invalid(format!("JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}
