//! State loaded at start, saved (debounced) after changes, and a file that
//! is not a state file refused with the fix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use puente_sandbox_kit::Persisted;

type State = BTreeMap<String, u64>;

#[tokio::test]
async fn changes_are_saved_once_the_burst_is_over_and_loaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let p = Arc::new(
        Persisted::<State>::open(Some(file.clone()), State::new)
            .unwrap()
            .with_debounce(Duration::from_millis(100)),
    );
    let saver = p.spawn_saver().expect("a file, so a saver");
    for i in 0..5 {
        p.lock().insert(format!("k{i}"), i);
        p.changed();
    }
    assert!(!file.exists(), "nothing written during the burst");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !file.exists() {
        assert!(tokio::time::Instant::now() < deadline, "never saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    saver.abort();
    let again = Persisted::<State>::open(Some(file.clone()), State::new).unwrap();
    assert_eq!(again.lock().len(), 5);
    assert!(
        !dir.path().join("state.tmp").exists(),
        "the temporary file was renamed"
    );
}

#[tokio::test]
async fn without_a_file_nothing_is_written_and_a_foreign_file_is_refused() {
    let p = Arc::new(Persisted::<State>::open(None, State::new).unwrap());
    assert!(p.spawn_saver().is_none());
    p.save().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.json");
    std::fs::write(&file, "[1, 2").unwrap();
    let e = Persisted::<State>::open(Some(file.clone()), State::new)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("is not a sandbox state file") && e.contains("move it away"),
        "{e}"
    );

    let gone = dir.path().join("missing").join("state.json");
    let p = Persisted::<State>::open(Some(gone), State::new).unwrap();
    let e = p.save().unwrap_err().to_string();
    assert!(e.contains("cannot save the state file"), "{e}");
}
