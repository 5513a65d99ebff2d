//! Tables on the real servers and a config that syncs them.

use std::path::PathBuf;

use puente_engine::{config, Engine, RunOptions, SyncReport};
pub use puente_testkit::Db;

pub struct Pair {
    pub a: Db,
    pub b: Db,
    pub dir: PathBuf,
    pub engine: Engine,
}

pub fn config_text(a: &Db, b: &Db, extra: &str) -> String {
    puente_testkit::contacts_config(
        a,
        b,
        "two-way",
        &format!("winner = \"a\"\ndelete_check_interval_secs = 0\n{extra}"),
        "",
    )
}

impl Pair {
    pub async fn new(a: Db, b: Db, extra: &str) -> Pair {
        let text = config_text(&a, &b, extra);
        Pair::with_config(a, b, &text).await
    }

    pub async fn with_config(a: Db, b: Db, text: &str) -> Pair {
        let dir = std::env::temp_dir().join(format!("puente-e2e-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("puente.toml");
        let text = text.to_string();
        std::fs::write(&path, &text).unwrap();
        let cfg = config::parse(&text, &path).unwrap_or_else(|d| panic!("{d:?}"));
        let engine = Engine::open(cfg).await.unwrap();
        Pair { a, b, dir, engine }
    }

    pub async fn run(&self) -> SyncReport {
        self.run_with(RunOptions::default()).await
    }

    /// The state store passes its integrity check.
    pub async fn assert_integrity(&self) {
        let problems = self.engine.state.integrity_problems().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// The records in `failed`, of every sync.
    pub async fn failed(&self) -> Vec<puente_state::RecordRow> {
        self.engine
            .state
            .records(&puente_state::RecordFilter {
                status: Some("failed".into()),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    pub async fn run_with(&self, opts: RunOptions) -> SyncReport {
        let def = self.engine.config.syncs[0].clone();
        self.engine
            .run(&def, &opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{t}-{n}", std::process::id())
}

/// The engine for a config file, loaded as `puente` loads it.
pub async fn open_engine(path: &std::path::Path) -> Engine {
    let cfg = config::load(path).await.unwrap_or_else(|d| panic!("{d:?}"));
    Engine::open(cfg).await.unwrap()
}

pub async fn duplicates(db: &Db, table: &str) -> Vec<String> {
    db.duplicates(table).await
}
