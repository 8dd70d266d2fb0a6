//! A directory open in one process is refused to a second process.

use quiver::{Database, Error, Metric, Options};
use std::process::Command;

const CHILD_ENV: &str = "QUIVER_LOCK_CHILD_DIR";

fn options() -> Options {
    Options::new(2, Metric::L2)
}

/// Child side: try to open the directory and say what happened.
#[test]
fn lock_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    match Database::open(&dir, options()) {
        Err(Error::WriterBusy { .. }) => println!("outcome: busy"),
        Ok(_) => println!("outcome: opened"),
        Err(e) => println!("outcome: other error {e}"),
    }
}

fn child_outcome(dir: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("outcome: ").map(|(_, o)| o.trim().to_owned()))
        .unwrap_or_else(|| "no outcome".into())
}

#[test]
fn second_process_is_refused_while_the_first_has_the_directory_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, options()).unwrap();
    assert_eq!(child_outcome(&dir), "busy");
    drop(db);
    assert_eq!(child_outcome(&dir), "opened");
}
