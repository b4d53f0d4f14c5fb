//! The `seqrec` binary end to end on a small generated MovieLens-style folder: data stats,
//! train, evaluate, recommend (known user and anonymous sequence), compare, and clear errors
//! with exit code 1 on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn seqrec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqrec"))
        .args(args)
        .env_remove("SEQREC_DATA")
        .output()
        .expect("the binary runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// 30 users walking 40 items in order (user u starts at item u), one interaction per second.
fn data_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("data");
    std::fs::create_dir_all(&folder).unwrap();
    let mut lines = String::new();
    for user in 1..=30u32 {
        for step in 0..12u32 {
            let item = (user + step) % 40 + 1;
            lines.push_str(&format!(
                "{user}\t{item}\t{}\t{}\n",
                1 + step % 5,
                1000 * user + step
            ));
        }
    }
    std::fs::write(folder.join("u.data"), lines).unwrap();
    folder
}

#[test]
fn stats_train_evaluate_recommend_compare() {
    let dir = std::env::temp_dir().join(format!("seqrec-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = data_folder(&dir);
    let data = data.to_str().unwrap();

    let stats = json(&seqrec(&["--json", "data", "stats", "--data", data]));
    assert_eq!(
        (
            stats["users"].as_u64(),
            stats["items"].as_u64(),
            stats["interactions"].as_u64()
        ),
        (Some(30), Some(40), Some(360))
    );
    assert_eq!(stats["sequence_length"]["median"].as_u64(), Some(12));
    assert_eq!(stats["behaviour_types"].as_u64(), Some(5));

    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let small = [
        "--set",
        "train.epochs=3",
        "--set",
        "model_options.dim=16",
        "--set",
        "model_options.ffn_dim=16",
        "--set",
        "data.max_len=8",
    ];
    let mut args = vec![
        "--json", "train", "--model", "sasrec", "--data", data, "--out", run_s,
    ];
    args.extend(small);
    let trained = json(&seqrec(&args));
    assert_eq!(trained["finished"].as_bool(), Some(true));
    assert_eq!(trained["test"]["n_users"].as_u64(), Some(30));
    assert!(run.join("best.safetensors").is_file() && run.join("config.json").is_file());

    let evaluated = json(&seqrec(&["--json", "evaluate", "--run", run_s]));
    assert_eq!(
        evaluated["test"], trained["test"],
        "evaluate reproduces the training run's test metrics"
    );
    let kept = json(&seqrec(&[
        "--json",
        "evaluate",
        "--run",
        run_s,
        "--keep-history",
    ]));
    assert!(
        kept["test"]["protocol"]["description"]
            .as_str()
            .unwrap()
            .contains("NOT excluded")
    );

    let for_user = json(&seqrec(&[
        "--json",
        "recommend",
        "--run",
        run_s,
        "--user",
        "7",
        "--k",
        "5",
    ]));
    let items: Vec<&str> = for_user
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].as_str().unwrap())
        .collect();
    assert_eq!(items.len(), 5);
    // User 7 has seen items 8..=19; those are excluded from the list.
    assert!(
        items
            .iter()
            .all(|i| !(8..=19).contains(&i.parse::<u32>().unwrap())),
        "{items:?}"
    );
    let anonymous = json(&seqrec(&[
        "--json",
        "recommend",
        "--run",
        run_s,
        "--items",
        "3,4,5",
        "--k",
        "3",
    ]));
    assert_eq!(anonymous.as_array().unwrap().len(), 3);

    let out = dir.join("compare");
    let mut args = vec![
        "--json",
        "compare",
        "--models",
        "sasrec,bprmf",
        "--data",
        data,
        "--seeds",
        "1,2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(small);
    let table = json(&seqrec(&args));
    assert_eq!(table.as_array().unwrap().len(), 2);
    for file in ["compare.md", "compare.json", "compare.svg"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    assert!(
        std::fs::read_to_string(out.join("compare.svg"))
            .unwrap()
            .contains("<svg")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_1() {
    let missing = seqrec(&["data", "stats", "--data", "/nonexistent/seqrec-data"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("error:") && stderr.contains("seqrec-data"),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("seqrec-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("u.data"), "1\t2\t5\t100\n1\tx\t5\t101\n").unwrap();
    let malformed = seqrec(&["data", "stats", "--data", dir.to_str().unwrap()]);
    assert_eq!(malformed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        stderr.contains("u.data:2"),
        "names the file and line: {stderr}"
    );

    let unknown_model = seqrec(&[
        "train",
        "--model",
        "nope",
        "--data",
        dir.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert_eq!(unknown_model.status.code(), Some(1));
    let typo = seqrec(&[
        "train",
        "--model",
        "sasrec",
        "--data",
        dir.to_str().unwrap(),
        "--set",
        "train.learning_rate=1",
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("learning_rate"));
    assert_eq!(seqrec(&["train", "--bogus"]).status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
