//! Run configuration: one TOML file (every field optional, defaults below) plus
//! `--set section.key=value` overrides from the command line. Unknown keys are errors, so a
//! typo never silently falls back to a default.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Model name, one of `train::MODELS` (amsrm, sasrec, caser, bprmf, attrec, pop, …).
    pub model: String,
    pub data: DataConfig,
    pub model_options: ModelConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Fixed sequence length n: keep the latest n items, left-pad with 0.
    pub max_len: usize,
    /// Keep only interactions with rating ≥ this (none = every interaction is positive).
    pub min_rating: Option<f32>,
    /// Drop repeated (user, item) pairs, keeping the first.
    pub dedup: bool,
    /// Iterated k-core filter: minimum interactions per user and per item.
    pub k_core: Option<(usize, usize)>,
    /// Buckets for numeric side information (age, year).
    pub numeric_buckets: usize,
    /// How to split into training, validation and test: `"leave-one-out"` (per user, the last
    /// item is test, the second-to-last validation), `"last-day"` (session data: the sessions
    /// of the last day, or of the publisher's test file, are test; the last day of the rest is
    /// validation; see `data::split::last_day_sessions`), or `"auto"`: last-day for session
    /// data sets (YOOCHOOSE, DIGINETICA), leave-one-out otherwise.
    pub split: String,
    /// Last-day split: the length in days of the test period (and of the validation period
    /// before it); SR-GNN takes 7 days for DIGINETICA.
    pub split_days: u32,
    /// Cold-start study: this fraction of the users (chosen with `train.seed`) is held out of
    /// training and validation and evaluated as new users (`data::cold`); in [0, 1), 0 = off.
    pub cold_users: f64,
    /// Cold-start study: this fraction of the items loses every interaction from training and
    /// validation; the cases whose target is such an item form the cold-item group. In [0, 1).
    pub cold_items: f64,
    /// Cold-start study: the history lengths new users are evaluated at (their first k items,
    /// then the next one is the target; 0 = user features only).
    pub cold_user_prefixes: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Embedding / hidden width d.
    pub dim: usize,
    /// Self-attention blocks (AMSRM, SASRec).
    pub blocks: usize,
    pub heads: usize,
    pub dropout: f32,
    /// Width of the FFN's hidden layer; unset, it is `dim` (SASRec's choice), so widening
    /// the model widens its FFN too. Read it through `ffn_width`.
    pub ffn_dim: Option<usize>,
    /// AMSRM: weight side-information fields with feature-level attention (false = plain
    /// concatenation, the ablation).
    pub feature_attention: bool,
    /// AMSRM: how the side information M joins the sequence part S: "concat" (the paper's
    /// eq. 3, E = concat(S, M)·W_E + b_E) or "add" (E = S + M·W_M + b_M: S reaches the blocks
    /// exactly as in SASRec, and the side information can only add to it).
    pub side_fusion: String,
    /// AMSRM: fold each item's own side information into its output embedding
    /// (N_i = item_i + Σ_f field_f(i), eq. 8); false = score against the id embedding only.
    pub side_info_in_output: bool,
    /// AMSRM: item-level attention, the second level of the survey's two-level attention: a
    /// learned weight in (0, 1) for each item of the sequence against the causal intent,
    /// which reweights that item in every self-attention block (`layers::ItemRelevance`).
    pub item_attention: bool,
    /// AMSRM item-level attention: one projection for the item and the intent, so that the
    /// relevance is a similarity (an item gains weight only by agreeing with the intent);
    /// false = separate projections (a free bilinear form).
    pub item_attention_tied: bool,
    /// AMSRM: use user features.
    pub user_features: bool,
    /// AMSRM: use item features.
    pub item_features: bool,
    /// AMSRM: use the behaviour type of each interaction.
    pub behaviour: bool,
    /// AMSRM: id dropout (DropoutNet, Volkovs et al. 2017): at every training step each item's
    /// id embedding is zero with this probability, so the model also learns to rank items
    /// from their features alone, as it must for cold-start items. In [0, 1).
    pub item_id_dropout: f32,
    /// AMSRM: weight λ of the attribute-prediction loss (DIF-SR's auxiliary attribute
    /// predictor): at every training position, each item field of the next item is also
    /// predicted from the hidden state (multi-label BCE over the field's tokens), added as
    /// λ · Σ_f loss_f. 0 = off.
    pub attribute_loss: f32,
    /// AMSRM: also learn to predict the first item of each training window from the user
    /// features alone (a start position), which then serves users with no history.
    pub first_item_from_user: bool,
    /// Caser and AttRec: the window of latest items the short-term part looks at (the papers' L).
    pub window: usize,
    /// Caser: number of horizontal filters per height and of vertical filters.
    pub caser_horizontal: usize,
    pub caser_vertical: usize,
    /// Caser: items predicted per training window (the paper's T).
    pub caser_targets: usize,
    /// AttRec: weight ω of the short-term (self-attention) part against the long-term part.
    pub attrec_weight: f32,
    /// AttRec: margin of the hinge loss.
    pub attrec_margin: f32,
    /// Fossil: order L of the Markov chain (how many of the latest items weigh in).
    pub fossil_order: usize,
    /// Fossil: exponent α of the long-term normalisation |history|^−α (0 = sum, 1 = mean).
    pub fossil_alpha: f32,
    /// ItemKNN / UserKNN: neighbours kept per item / user (k, Sarwar et al.'s model size).
    pub knn_neighbours: usize,
    /// ItemKNN / UserKNN: shrinkage λ of the cosine, dot / (‖a‖‖b‖ + λ).
    pub knn_shrinkage: f32,
    /// ItemKNN (and UserKNN for an anonymous sequence): the latest input items that score
    /// (0 = every item of the input).
    pub knn_history: usize,
    /// ItemKNN / UserKNN: recency decay, the item t steps before the last weighs decay^t
    /// (1 = all items weigh the same; the default 0.6 is the sequential variant).
    pub knn_decay: f32,
    /// UserKNN: the latest distinct training items kept as each user's profile.
    pub knn_user_items: usize,
    /// NextItNet: the dilation of each residual block, a list ([1, 2, 4, 8]) or a number of
    /// repeats of {1, 2, 4, 8}.
    pub nextitnet_dilations: crate::models::nextitnet::Dilations,
    /// NextItNet: width of every causal convolution.
    pub nextitnet_kernel: usize,
    /// NextItNet: score against a separate output embedding instead of the input one.
    pub nextitnet_separate_output: bool,
    /// STAMP: train at every prefix of the sequence (false: only the last position).
    pub stamp_every_position: bool,
    /// STAMP: m_a = Σ α_i x_i + m_s (as RecBole does) instead of the paper's Σ α_i x_i.
    pub stamp_add_mean: bool,
    /// GRU4Rec: stacked GRU layers (hidden width = dim).
    pub gru_layers: usize,
    /// GRU4Rec: "ce" (full softmax), "bpr-max" or "top1-max"; unset = follow train.loss.
    pub gru4rec_loss: Option<String>,
    /// GRU4Rec: λ of BPR-max's score regularisation λ Σ_j s_j r_j².
    pub gru4rec_bpr_reg: f32,
    /// GRU4Rec: score against the input item embeddings (tied) instead of a separate table.
    pub gru4rec_tied: bool,
    /// BERT4Rec: proportion ρ of each training sequence's items masked for the Cloze task.
    pub bert_mask_prob: f32,
    /// BERT4Rec: probability that a training sequence masks only its last item instead (the
    /// paper's extra samples matching next-item prediction; 0 = pure Cloze).
    pub bert_last_item_prob: f32,
    /// MF (ALS): confidence c = 1 + α·count of an observed user-item pair (the paper's 40
    /// suits its TV data; 1 with λ = 10 was best on ml-100k validation).
    pub als_alpha: f32,
    /// MF (ALS): L2 regularisation λ of the user and item factors (> 0).
    pub als_lambda: f32,
    /// MF (ALS): sweeps of alternating user and item updates.
    pub als_iterations: usize,
    /// HMM: number of hidden states (latent user contexts).
    pub hmm_states: usize,
    /// HMM: Baum-Welch (EM) iterations.
    pub hmm_iterations: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    /// Decoupled weight decay (AdamW); 0 = Adam.
    pub weight_decay: f32,
    /// "ce" (full softmax over the catalogue) or "bce" (sampled negatives, the papers' recipe).
    pub loss: String,
    /// Negatives per positive for BCE.
    pub negatives: usize,
    /// Stop after this many evaluations without a better validation NDCG@10 (0 = never).
    pub patience: usize,
    /// Evaluate on the validation set every this many epochs.
    pub eval_every: usize,
    /// Clip the global gradient norm (0 = off).
    pub clip_norm: f32,
    pub seed: u64,
    /// Threads for the CPU backend (0 = all cores).
    pub threads: usize,
    /// Batch sequences of similar length together (sorted within windows of 64 batches) and
    /// cut each batch to its longest sequence: much faster on sparse data (Amazon Beauty's
    /// median user has 6 items), a different (still seeded) order of examples. Only for
    /// models whose output does not depend on the padding width (SASRec, AMSRM, GRU4Rec);
    /// others ignore it.
    pub bucket_by_length: bool,
    /// Denoising augmentation: the probability that a training input item is replaced by a
    /// random catalogue item, targets unchanged (0 = off; `eval::noise`), in [0, 1).
    pub input_noise: f32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub ks: Vec<usize>,
    /// Exclude the user's known items from the ranking (the target never is).
    pub exclude_history: bool,
    /// Sampled evaluation with this many negatives instead of full ranking (labelled as such).
    pub sampled_negatives: Option<usize>,
    /// Input noise: insert ⌈noise·len⌉ uniform random items at random positions of each
    /// evaluated history (targets and excluded items unchanged), a robustness check; in [0, 1).
    pub noise: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: "amsrm".into(),
            data: DataConfig::default(),
            model_options: ModelConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            max_len: 50,
            min_rating: None,
            dedup: false,
            k_core: None,
            numeric_buckets: 8,
            split: "auto".to_string(),
            split_days: 1,
            cold_users: 0.0,
            cold_items: 0.0,
            cold_user_prefixes: vec![0, 1, 3, 5],
        }
    }
}

impl ModelConfig {
    /// The FFN's hidden width: `ffn_dim`, or `dim` where it is unset.
    pub fn ffn_width(&self) -> usize {
        self.ffn_dim.unwrap_or(self.dim)
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dim: 64,
            blocks: 2,
            heads: 1,
            dropout: 0.2,
            ffn_dim: None,
            feature_attention: true,
            side_fusion: "concat".into(),
            side_info_in_output: true,
            item_attention: false,
            item_attention_tied: false,
            user_features: true,
            item_features: true,
            behaviour: true,
            item_id_dropout: 0.0,
            attribute_loss: 0.0,
            first_item_from_user: false,
            window: 5,
            caser_horizontal: 16,
            caser_vertical: 4,
            caser_targets: 3,
            attrec_weight: 0.3,
            attrec_margin: 0.5,
            fossil_order: 3,
            fossil_alpha: 0.5,
            knn_neighbours: 100,
            knn_shrinkage: 10.0,
            knn_history: 0,
            knn_decay: 0.6,
            knn_user_items: 200,
            nextitnet_dilations: Default::default(),
            nextitnet_kernel: 3,
            nextitnet_separate_output: false,
            stamp_every_position: true,
            stamp_add_mean: false,
            gru_layers: 1,
            gru4rec_loss: None,
            gru4rec_bpr_reg: 1.0,
            gru4rec_tied: true,
            bert_mask_prob: 0.2,
            bert_last_item_prob: 0.0,
            als_alpha: 1.0,
            als_lambda: 10.0,
            als_iterations: 15,
            hmm_states: 16,
            hmm_iterations: 50,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.0,
            loss: "ce".into(),
            negatives: 1,
            patience: 20,
            eval_every: 1,
            clip_norm: 0.0,
            seed: 1,
            threads: 0,
            bucket_by_length: false,
            input_noise: 0.0,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            ks: vec![5, 10, 15, 20],
            exclude_history: true,
            sampled_negatives: None,
            noise: 0.0,
        }
    }
}

impl Config {
    /// Parses a TOML config, applies `key=value` overrides (dotted keys, values in TOML syntax;
    /// a bare word is taken as a string), and checks the result.
    pub fn from_toml_with_overrides(text: &str, overrides: &[String]) -> Result<Config> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| Error::Invalid(format!("config: {e}")))?;
        for assignment in overrides {
            let (key, raw) = assignment.split_once('=').ok_or_else(|| {
                Error::Invalid(format!(
                    "--set {assignment}: expected key=value, e.g. train.lr=0.001"
                ))
            })?;
            let parsed: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
                Ok(mut t) => t.remove("v").expect("parsed key"),
                Err(_) => toml::Value::String(raw.to_string()),
            };
            set_dotted(&mut value, key.trim(), parsed)?;
        }
        let config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Invalid(format!("config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Invalid(format!("config: {what}")));
        if self.data.max_len == 0 {
            return bad("data.max_len must be at least 1".into());
        }
        if !["concat", "add", "decoupled"].contains(&self.model_options.side_fusion.as_str()) {
            return bad(format!(
                "model_options.side_fusion must be \"concat\", \"add\" or \"decoupled\", got {:?}",
                self.model_options.side_fusion
            ));
        }
        if !["auto", "leave-one-out", "last-day"].contains(&self.data.split.as_str()) {
            return bad(format!(
                "data.split must be \"auto\", \"leave-one-out\" or \"last-day\", got {:?}",
                self.data.split
            ));
        }
        if self.data.split_days == 0 {
            return bad("data.split_days must be at least 1".into());
        }
        for (key, fraction) in [
            ("data.cold_users", self.data.cold_users),
            ("data.cold_items", self.data.cold_items),
        ] {
            if !(0.0..1.0).contains(&fraction) {
                return bad(format!("{key} must be in [0, 1), got {fraction}"));
            }
        }
        if self.data.cold_users > 0.0 && self.data.cold_user_prefixes.is_empty() {
            return bad("data.cold_user_prefixes must list at least one history length".into());
        }
        if self.data.cold_items > 0.0 && self.train.loss != "ce" {
            return bad(format!(
                "data.cold_items needs train.loss = \"ce\" (sampled negatives would include the \
                 cold items), got {:?}",
                self.train.loss
            ));
        }
        let attribute_loss = self.model_options.attribute_loss;
        if !(attribute_loss.is_finite() && attribute_loss >= 0.0) {
            return bad(format!(
                "model_options.attribute_loss must be a finite weight ≥ 0, got {attribute_loss}"
            ));
        }
        if !(0.0..1.0).contains(&self.model_options.item_id_dropout) {
            return bad(format!(
                "model_options.item_id_dropout must be in [0, 1), got {}",
                self.model_options.item_id_dropout
            ));
        }
        if self.model_options.dim == 0
            || self.model_options.heads == 0
            || !self
                .model_options
                .dim
                .is_multiple_of(self.model_options.heads)
        {
            return bad(format!(
                "model_options.dim ({}) must be a positive multiple of heads ({})",
                self.model_options.dim, self.model_options.heads
            ));
        }
        if !(0.0..1.0).contains(&self.model_options.dropout) {
            return bad(format!(
                "model_options.dropout must be in [0, 1), got {}",
                self.model_options.dropout
            ));
        }
        if self.train.loss != "ce" && self.train.loss != "bce" {
            return bad(format!(
                "train.loss must be \"ce\" or \"bce\", got {:?}",
                self.train.loss
            ));
        }
        if self.train.batch_size == 0 || self.train.epochs == 0 || self.train.eval_every == 0 {
            return bad(
                "train.batch_size, train.epochs and train.eval_every must be at least 1".into(),
            );
        }
        if self.eval.ks.is_empty() || self.eval.ks.contains(&0) {
            return bad("eval.ks must be a non-empty list of positive cut-offs".into());
        }
        if !(0.0..1.0).contains(&self.train.input_noise) {
            return bad(format!(
                "train.input_noise must be in [0, 1), got {}",
                self.train.input_noise
            ));
        }
        if !(0.0..1.0).contains(&self.eval.noise) {
            return bad(format!(
                "eval.noise must be in [0, 1), got {}",
                self.eval.noise
            ));
        }
        Ok(())
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Invalid(format!("--set: empty key in {key:?}")))?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| Error::Invalid(format!("--set {key}: `{part}` is not a section")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_default() {
        assert_eq!(
            Config::from_toml_with_overrides("", &[]).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn overrides_apply_with_types() {
        let text = "model = \"sasrec\"\n[train]\nlr = 0.01\n";
        let sets = vec![
            "train.lr=0.005".to_string(),
            "train.loss=bce".to_string(),
            "data.max_len=30".to_string(),
            "eval.ks=[1,2]".to_string(),
        ];
        let c = Config::from_toml_with_overrides(text, &sets).unwrap();
        assert_eq!(c.model, "sasrec");
        assert_eq!(c.train.lr, 0.005);
        assert_eq!(c.train.loss, "bce");
        assert_eq!(c.data.max_len, 30);
        assert_eq!(c.eval.ks, vec![1, 2]);
    }

    #[test]
    fn the_ffn_follows_dim_unless_set() {
        let wide = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Config::from_toml_with_overrides("", &sets)
                .unwrap()
                .model_options
                .ffn_width()
        };
        assert_eq!(wide(&[]), 64);
        assert_eq!(wide(&["model_options.dim=128"]), 128);
        assert_eq!(
            wide(&["model_options.dim=128", "model_options.ffn_dim=32"]),
            32
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(
            Config::from_toml_with_overrides("[train]\nlearning_rate = 0.1\n", &[])
                .unwrap_err()
                .to_string()
                .contains("learning_rate")
        );
        assert!(Config::from_toml_with_overrides("", &["train.loss=hinge".into()]).is_err());
        assert!(Config::from_toml_with_overrides("", &["train.lr".into()]).is_err());
        assert!(Config::from_toml_with_overrides("", &["model_options.heads=3".into()]).is_err());
        assert!(Config::from_toml_with_overrides("[train\n", &[]).is_err());
    }
}
