//! `data.split` chooses the split: "auto" splits session data by the last day and user data
//! leave-one-out; the explicit values override it; the last-day split of sessions leaks no
//! test (or validation) session into training; a bad value is an error.

use std::collections::HashSet;

use seqrec::config::Config;
use seqrec::data::{Dataset, Interaction};
use seqrec::train::Experiment;

const DAY: i64 = 86_400;
/// Generated days start this far apart: the sessions of a day fill its first 12 hours, so the
/// 24 hours before the last event hold exactly the last generated day.
const DAY_START: i64 = DAY + 13 * 3600;
const DAYS: i64 = 10;
const SESSIONS_PER_DAY: i64 = 12;
const ITEMS: u32 = 30;

/// Anonymous sessions over `DAYS` days, in time order, named "d{day}s{k}": 2 to 5 clicks that
/// walk the items in order from a start that depends on the session, a minute apart.
fn sessions() -> Dataset {
    let mut d = Dataset::empty("generated-sessions");
    d.sessions = true;
    for i in 1..=ITEMS {
        d.items.intern(&i.to_string());
    }
    for day in 0..DAYS {
        for k in 0..SESSIONS_PER_DAY {
            let session = d.users.intern(&format!("d{day}s{k}"));
            let start = (day * 7 + k * 3) as u32 % ITEMS;
            let length = 2 + (day + k) % 4;
            for t in 0..length {
                d.interactions.push(Interaction {
                    user: session,
                    item: (start + t as u32) % ITEMS + 1,
                    timestamp: Some(day * DAY_START + k * 3600 + t * 60),
                    rating: None,
                    behaviour: 0,
                });
            }
        }
    }
    d
}

fn config(split: Option<&str>) -> Config {
    let sets: Vec<String> = split
        .map(|s| format!("data.split={s}"))
        .into_iter()
        .collect();
    Config::from_toml_with_overrides("model = \"pop\"\n", &sets).unwrap()
}

/// The day of a generated session from its name "d{day}s{k}".
fn day_of(name: &str) -> i64 {
    name[1..name.find('s').unwrap()].parse().unwrap()
}

fn names(exp: &Experiment, users: impl Iterator<Item = u32>) -> HashSet<&str> {
    users.map(|u| exp.user_names[u as usize].as_str()).collect()
}

#[test]
fn auto_splits_sessions_by_the_last_day() {
    let data = sessions();
    for split in [None, Some("auto"), Some("last-day")] {
        let exp = Experiment::prepare(&data, &config(split)).unwrap();
        let train = names(&exp, exp.split.train.iter().map(|s| s.user));
        let valid = names(&exp, exp.split.valid.iter().map(|c| c.user));
        let test = names(&exp, exp.split.test.iter().map(|c| c.user));
        // "The last day" is exactly the last generated day's sessions; validation is the
        // day before.
        assert_eq!(
            train.len() as i64,
            (DAYS - 2) * SESSIONS_PER_DAY,
            "{split:?}"
        );
        assert!(train.iter().all(|n| day_of(n) < DAYS - 2), "{split:?}");
        assert!(!valid.is_empty() && valid.iter().all(|n| day_of(n) == DAYS - 2));
        assert!(!test.is_empty() && test.iter().all(|n| day_of(n) == DAYS - 1));
        // One case per prefix: a session of length L gives L − 1 cases (all items are warm).
        let test_clicks = (0..SESSIONS_PER_DAY)
            .map(|k| 2 + (DAYS - 1 + k) % 4 - 1)
            .sum::<i64>();
        assert_eq!(exp.split.test.len() as i64, test_clicks);
        // Sessions of 2 clicks are kept (session papers keep every session of 2 or more).
        assert!(exp.split.train.iter().any(|s| s.items.len() == 2));
    }
}

#[test]
fn auto_splits_user_data_leave_one_out_and_explicit_values_override() {
    let mut users = sessions();
    users.sessions = false;
    let auto = Experiment::prepare(&users, &config(None)).unwrap();
    // Leave-one-out: every user (of 3 or more items) trains and has one validation and one
    // test case.
    let users_with_3 = auto.sequences.num_users();
    assert_eq!(auto.split.test.len(), users_with_3);
    assert_eq!(auto.split.valid.len(), users_with_3);
    assert_eq!(auto.split.train.len(), users_with_3);

    let forced = Experiment::prepare(&sessions(), &config(Some("leave-one-out"))).unwrap();
    assert_eq!(forced.split.test.len(), forced.sequences.num_users());
    assert_eq!(forced.split.test.len(), forced.split.train.len());

    let by_day = Experiment::prepare(&users, &config(Some("last-day"))).unwrap();
    let test = names(&by_day, by_day.split.test.iter().map(|c| c.user));
    assert!(!test.is_empty() && test.iter().all(|n| day_of(n) == DAYS - 1));
}

#[test]
fn last_day_split_keeps_evaluation_sessions_out_of_training() {
    // Without and with a publisher's test file (the last two days' sessions appended after
    // the training part, as the YOOCHOOSE loader does).
    let mut published = sessions();
    published.published_test_start = published
        .interactions
        .iter()
        .position(|i| i.timestamp.unwrap() >= (DAYS - 2) * DAY_START);
    for data in [sessions(), published] {
        let exp = Experiment::prepare(&data, &config(None)).unwrap();
        let train_sessions: HashSet<u32> = exp.split.train.iter().map(|s| s.user).collect();
        let train_items: HashSet<u32> = exp
            .split
            .train
            .iter()
            .flat_map(|s| s.items.iter().copied())
            .collect();
        assert!(!exp.split.test.is_empty() && !exp.split.valid.is_empty());
        for case in exp.split.test.iter().chain(&exp.split.valid) {
            assert!(
                !train_sessions.contains(&case.user),
                "evaluation session {} is also in training",
                exp.user_names[case.user as usize]
            );
            // Items never trained on are removed from evaluation sessions.
            assert!(
                case.history
                    .iter()
                    .chain(&case.targets)
                    .all(|i| train_items.contains(i))
            );
        }
        let valid_sessions: HashSet<u32> = exp.split.valid.iter().map(|c| c.user).collect();
        assert!(
            exp.split
                .test
                .iter()
                .all(|c| !valid_sessions.contains(&c.user))
        );
        // Training is the sessions before the evaluation days.
        assert!(
            exp.split
                .train
                .iter()
                .all(|s| day_of(&exp.user_names[s.user as usize]) < DAYS - 2)
        );
    }
}

#[test]
fn a_bad_split_value_is_an_error() {
    let err = Config::from_toml_with_overrides("model = \"pop\"\n", &["data.split=random".into()])
        .unwrap_err();
    assert!(err.to_string().contains("data.split"), "{err}");
    let mut config = config(None);
    config.data.split = "leave-two-out".into();
    let err = Experiment::prepare(&sessions(), &config).err().unwrap();
    assert!(err.to_string().contains("data.split"), "{err}");
    let err = Config::from_toml_with_overrides("model = \"pop\"\n", &["data.split_days=0".into()])
        .unwrap_err();
    assert!(err.to_string().contains("data.split_days"), "{err}");
}

#[test]
fn split_days_widens_the_evaluation_periods() {
    let mut config = config(None);
    config.data.split_days = 2;
    let exp = Experiment::prepare(&sessions(), &config).unwrap();
    let valid = names(&exp, exp.split.valid.iter().map(|c| c.user));
    let test = names(&exp, exp.split.test.iter().map(|c| c.user));
    // Two generated days (37 h apart, 12 h of sessions each) fit in 48 hours.
    assert!(
        test.iter().any(|n| day_of(n) == DAYS - 2) && test.iter().all(|n| day_of(n) >= DAYS - 2)
    );
    assert!(
        valid.iter().any(|n| day_of(n) == DAYS - 4)
            && valid
                .iter()
                .all(|n| day_of(n) >= DAYS - 4 && day_of(n) < DAYS - 2)
    );
}
