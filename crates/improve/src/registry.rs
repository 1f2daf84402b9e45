//! The registry: one SQLite database with runs, rounds, tasks, samples, verdicts, adapters with
//! their lineage and status, metrics, and the `current` pointer to the promoted self. Every
//! change is one transaction, so a `kill -9` leaves the last committed state intact.
use crate::score::{LevelScore, SkillScore};
use crate::task::{Degenerate, Task, Verdict};
use crate::ImproveError;
use rusqlite::{params, Connection, OptionalExtension};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
/// A fresh name beside `path` ending in `.ext`, to write into before renaming: each write has
/// its own, so two writers of one file (the server and the CLI drawing one report) never rename
/// each other's half-written copy.
pub(crate) fn temp_beside(path: &Path, ext: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}-{}-{}.{ext}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImproveError> {
    let tmp = temp_beside(path, "tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| ImproveError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ImproveError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ImproveError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ImproveError::io(path, e))
}

/// Maps a database error to one naming the registry's file; for code that holds a transaction
/// and so cannot borrow the registry for it.
fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> ImproveError {
    let path = path.to_path_buf();
    move |e| ImproveError::Db {
        path: path.clone(),
        source: e,
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs(
  id TEXT PRIMARY KEY, created INTEGER NOT NULL, model TEXT NOT NULL, skills TEXT NOT NULL,
  config TEXT NOT NULL, status TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rounds(
  run TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL, curriculum TEXT NOT NULL,
  candidate INTEGER, timings TEXT NOT NULL DEFAULT '{}', stats TEXT NOT NULL DEFAULT '{}',
  started INTEGER NOT NULL, finished INTEGER, PRIMARY KEY(run, idx));
CREATE TABLE IF NOT EXISTS tasks(
  run TEXT NOT NULL, round INTEGER NOT NULL, id INTEGER NOT NULL, skill TEXT NOT NULL,
  level INTEGER NOT NULL, sub TEXT NOT NULL, key TEXT NOT NULL, task TEXT NOT NULL,
  PRIMARY KEY(run, round, id));
CREATE TABLE IF NOT EXISTS samples(
  run TEXT NOT NULL, round INTEGER NOT NULL, task INTEGER NOT NULL, k INTEGER NOT NULL,
  scaffold TEXT NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL, cut_off INTEGER NOT NULL,
  pass INTEGER NOT NULL, score REAL NOT NULL, format_ok INTEGER NOT NULL, degenerate TEXT,
  PRIMARY KEY(run, round, task, k));
CREATE TABLE IF NOT EXISTS adapters(
  version INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, run TEXT NOT NULL, round INTEGER NOT NULL,
  parent INTEGER, base_model TEXT NOT NULL, data_hash TEXT NOT NULL, examples INTEGER NOT NULL,
  seed INTEGER NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
  created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metrics(
  subject TEXT NOT NULL, skill TEXT NOT NULL, sub TEXT NOT NULL, evalset TEXT NOT NULL,
  n INTEGER NOT NULL, correct INTEGER NOT NULL, format_ok INTEGER NOT NULL,
  degenerate INTEGER NOT NULL, PRIMARY KEY(subject, skill, sub, evalset));
CREATE TABLE IF NOT EXISTS metric_passes(
  subject TEXT NOT NULL, skill TEXT NOT NULL, sub TEXT NOT NULL, evalset TEXT NOT NULL,
  passes TEXT NOT NULL, PRIMARY KEY(subject, skill, sub, evalset));
CREATE TABLE IF NOT EXISTS guard(
  subject TEXT NOT NULL, text_hash TEXT NOT NULL, ppl REAL NOT NULL, PRIMARY KEY(subject, text_hash));
CREATE TABLE IF NOT EXISTS current(
  id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER, changed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history(
  at INTEGER NOT NULL, action TEXT NOT NULL, version INTEGER, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replay(
  run TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY(run, idx));
CREATE TABLE IF NOT EXISTS proposals(
  run TEXT NOT NULL, round INTEGER NOT NULL, skill TEXT NOT NULL, idx INTEGER NOT NULL,
  text TEXT NOT NULL, PRIMARY KEY(run, round, skill, idx));
";

/// Status of an adapter version.
pub const CANDIDATE: &str = "candidate";
pub const PROMOTED: &str = "promoted";
pub const REJECTED: &str = "rejected";
pub const ROLLED_BACK: &str = "rolled_back";

/// One entry of the registry's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub at: i64,
    pub action: String,
    pub version: Option<i64>,
    pub note: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub skills: Vec<String>,
    pub config: serde_json::Value,
    pub status: String,
    pub summary: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundRow {
    pub run: String,
    pub idx: i64,
    pub status: String,
    pub curriculum: serde_json::Value,
    pub candidate: Option<i64>,
    pub timings: serde_json::Value,
    pub stats: serde_json::Value,
    pub started: i64,
    pub finished: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterRow {
    pub version: i64,
    pub name: String,
    pub run: String,
    pub round: i64,
    pub parent: Option<i64>,
    pub base_model: String,
    pub data_hash: String,
    pub examples: i64,
    pub seed: i64,
    pub config: serde_json::Value,
    pub status: String,
    pub reason: String,
    pub created: i64,
}

/// One verified sample as stored.
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub task: i64,
    pub k: i64,
    /// Where the few-shot demonstrations came from: `none`, `generator`, `pool`, `examples`.
    pub scaffold: String,
    pub text: String,
    pub tokens: i64,
    pub cut_off: bool,
    pub verdict: Verdict,
}

pub struct Registry {
    conn: Connection,
    path: PathBuf,
}

fn json(s: String) -> serde_json::Value {
    serde_json::from_str(&s).unwrap_or(serde_json::Value::Null)
}

impl Registry {
    pub fn open(path: &Path) -> Result<Registry, ImproveError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| ImproveError::io(d, e))?;
        }
        let conn = Connection::open(path).map_err(|e| ImproveError::Db {
            path: path.to_path_buf(),
            source: e,
        })?;
        let r = Registry {
            conn,
            path: path.to_path_buf(),
        };
        r.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| r.db(e))?;
        r.conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| r.db(e))?;
        r.conn.execute_batch(SCHEMA).map_err(|e| r.db(e))?;
        Ok(r)
    }

    /// Opens an existing registry without creating one (for `current_self`).
    pub fn open_existing(path: &Path) -> Result<Option<Registry>, ImproveError> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    fn db(&self, e: rusqlite::Error) -> ImproveError {
        ImproveError::Db {
            path: self.path.clone(),
            source: e,
        }
    }

    pub fn create_run(
        &self,
        id: &str,
        model: &str,
        skills: &[String],
        config: &serde_json::Value,
    ) -> Result<(), ImproveError> {
        self.conn
            .execute(
                "INSERT INTO runs(id, created, model, skills, config, status) VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
                params![id, now(), model, serde_json::to_string(skills).expect("strings serialize"), config.to_string()],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    pub fn set_run_status(
        &self,
        id: &str,
        status: &str,
        summary: &str,
    ) -> Result<(), ImproveError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, summary = ?3 WHERE id = ?1",
                params![id, status, summary],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Replaces a run's stored configuration and records why in the history, in one
    /// transaction.
    pub fn change_run_config(
        &mut self,
        id: &str,
        config: &serde_json::Value,
        note: &str,
    ) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "UPDATE runs SET config = ?2 WHERE id = ?1",
            params![id, config.to_string()],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT INTO history(at, action, version, note) VALUES (?1, 'config', NULL, ?2)",
            params![now(), format!("{id}: {note}")],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    /// Every promotion, rejection, rollback and configuration change, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryRow>, ImproveError> {
        let mut st = self
            .conn
            .prepare("SELECT at, action, version, note FROM history ORDER BY rowid")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(HistoryRow {
                    at: r.get(0)?,
                    action: r.get(1)?,
                    version: r.get(2)?,
                    note: r.get(3)?,
                })
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
        Ok(RunRow {
            id: r.get(0)?,
            created: r.get(1)?,
            model: r.get(2)?,
            skills: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
            config: json(r.get(4)?),
            status: r.get(5)?,
            summary: r.get(6)?,
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>, ImproveError> {
        self.conn
            .query_row(
                "SELECT id, created, model, skills, config, status, summary FROM runs WHERE id = ?1",
                params![id],
                Self::run_row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    pub fn runs(&self) -> Result<Vec<RunRow>, ImproveError> {
        let mut st = self
            .conn
            .prepare("SELECT id, created, model, skills, config, status, summary FROM runs ORDER BY created, id")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([], Self::run_row)
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    pub fn rounds(&self, run: &str) -> Result<Vec<RoundRow>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT run, idx, status, curriculum, candidate, timings, stats, started, finished
                 FROM rounds WHERE run = ?1 ORDER BY idx",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run], |r| {
                Ok(RoundRow {
                    run: r.get(0)?,
                    idx: r.get(1)?,
                    status: r.get(2)?,
                    curriculum: json(r.get(3)?),
                    candidate: r.get(4)?,
                    timings: json(r.get(5)?),
                    stats: json(r.get(6)?),
                    started: r.get(7)?,
                    finished: r.get(8)?,
                })
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    /// The statistics recorded with round `idx` of `run` (null when it has none).
    pub fn round_stats(&self, run: &str, idx: i64) -> Result<serde_json::Value, ImproveError> {
        Ok(self
            .rounds(run)?
            .into_iter()
            .find(|r| r.idx == idx)
            .map(|r| r.stats)
            .unwrap_or_default())
    }

    /// Starts round `idx` with its tasks, in one transaction (a round with no tasks row is
    /// simply started again after a crash).
    pub fn start_round(
        &mut self,
        run: &str,
        idx: i64,
        curriculum: &serde_json::Value,
        tasks: &[Task],
    ) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "INSERT INTO rounds(run, idx, status, curriculum, started) VALUES (?1, ?2, 'rollouts', ?3, ?4)",
            params![run, idx, curriculum.to_string(), now()],
        )
        .map_err(&db)?;
        {
            let mut st = tx
                .prepare("INSERT INTO tasks(run, round, id, skill, level, sub, key, task) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(&db)?;
            for (i, t) in tasks.iter().enumerate() {
                st.execute(params![
                    run,
                    idx,
                    i as i64,
                    t.skill,
                    t.level as i64,
                    t.sub,
                    t.key,
                    serde_json::to_string(t).expect("tasks serialize")
                ])
                .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    pub fn update_round(
        &self,
        run: &str,
        idx: i64,
        status: &str,
        candidate: Option<i64>,
        timings: &serde_json::Value,
        stats: &serde_json::Value,
    ) -> Result<(), ImproveError> {
        let finished = (status == "done").then(now);
        self.conn
            .execute(
                "UPDATE rounds SET status = ?3, candidate = COALESCE(?4, candidate), timings = ?5, stats = ?6,
                 finished = ?7 WHERE run = ?1 AND idx = ?2",
                params![run, idx, status, candidate, timings.to_string(), stats.to_string(), finished],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    pub fn tasks(&self, run: &str, round: i64) -> Result<Vec<Task>, ImproveError> {
        let mut st = self
            .conn
            .prepare("SELECT task FROM tasks WHERE run = ?1 AND round = ?2 ORDER BY id")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run, round], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|s| serde_json::from_str(&s).ok())
            .collect())
    }

    /// A chunk of finished rollouts, committed together.
    pub fn insert_samples(
        &mut self,
        run: &str,
        round: i64,
        rows: &[SampleRow],
    ) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO samples(run, round, task, k, scaffold, text, tokens, cut_off, pass, score, format_ok, degenerate)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(&db)?;
            for s in rows {
                st.execute(params![
                    run,
                    round,
                    s.task,
                    s.k,
                    s.scaffold,
                    s.text,
                    s.tokens,
                    s.cut_off,
                    s.verdict.pass,
                    s.verdict.score as f64,
                    s.verdict.format_ok,
                    s.verdict.degenerate.map(Degenerate::name)
                ])
                .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    pub fn samples(&self, run: &str, round: i64) -> Result<Vec<SampleRow>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT task, k, scaffold, text, tokens, cut_off, pass, score, format_ok, degenerate
                 FROM samples WHERE run = ?1 AND round = ?2 ORDER BY task, k",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run, round], |r| {
                Ok(SampleRow {
                    task: r.get(0)?,
                    k: r.get(1)?,
                    scaffold: r.get(2)?,
                    text: r.get(3)?,
                    tokens: r.get(4)?,
                    cut_off: r.get(5)?,
                    verdict: Verdict {
                        pass: r.get(6)?,
                        score: r.get::<_, f64>(7)? as f32,
                        format_ok: r.get(8)?,
                        degenerate: r
                            .get::<_, Option<String>>(9)?
                            .and_then(|d| Degenerate::parse(&d)),
                    },
                })
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    /// Every passed sample of `run` in rounds up to `round`, with its task: the accumulated
    /// training pool (ReST-EM).
    pub fn verified(&self, run: &str, round: i64) -> Result<Vec<(Task, String)>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT t.task, s.text FROM samples s JOIN tasks t
                   ON t.run = s.run AND t.round = s.round AND t.id = s.task
                 WHERE s.run = ?1 AND s.round <= ?2 AND s.pass = 1 ORDER BY s.round, s.task, s.k",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run, round], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, s)| Some((serde_json::from_str(&t).ok()?, s)))
            .collect())
    }

    /// Every sample of the rounds of `run` up to `round`, passed or not, with its task and
    /// whether it was cut off at its token limit, in the order they were drawn.
    pub fn attempts(
        &self,
        run: &str,
        round: i64,
    ) -> Result<Vec<(Task, String, bool)>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT t.task, s.text, s.cut_off FROM samples s JOIN tasks t
                   ON t.run = s.run AND t.round = s.round AND t.id = s.task
                 WHERE s.run = ?1 AND s.round <= ?2 ORDER BY s.round, s.task, s.k",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run, round], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0,
                ))
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, s, c)| Some((serde_json::from_str(&t).ok()?, s, c)))
            .collect())
    }

    /// The base's own text samples replayed in a run's training, in order.
    pub fn replay(&self, run: &str) -> Result<Vec<String>, ImproveError> {
        let mut st = self
            .conn
            .prepare("SELECT text FROM replay WHERE run = ?1 ORDER BY idx")
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    /// The requests the model proposed for `skill` in the rounds of `run` before `round`, in
    /// the order they were kept.
    pub fn proposals(
        &self,
        run: &str,
        skill: &str,
        round: i64,
    ) -> Result<Vec<String>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT text FROM proposals WHERE run = ?1 AND skill = ?2 AND round < ?3
                 ORDER BY round, idx",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![run, skill, round], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    /// Stores one round's proposals for `skill`, replacing any a killed try of the round left.
    pub fn put_proposals(
        &mut self,
        run: &str,
        round: i64,
        skill: &str,
        texts: &[String],
    ) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "DELETE FROM proposals WHERE run = ?1 AND round = ?2 AND skill = ?3",
            params![run, round, skill],
        )
        .map_err(&db)?;
        for (i, t) in texts.iter().enumerate() {
            tx.execute(
                "INSERT INTO proposals(run, round, skill, idx, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, round, skill, i as i64, t],
            )
            .map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    /// Stores a run's replay texts in one transaction (all or none).
    pub fn put_replay(&mut self, run: &str, texts: &[String]) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute("DELETE FROM replay WHERE run = ?1", params![run])
            .map_err(&db)?;
        for (i, t) in texts.iter().enumerate() {
            tx.execute(
                "INSERT INTO replay(run, idx, text) VALUES (?1, ?2, ?3)",
                params![run, i as i64, t],
            )
            .map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    /// Records a trained candidate; returns its version.
    pub fn add_adapter(&self, a: &AdapterRow) -> Result<i64, ImproveError> {
        self.conn
            .execute(
                "INSERT INTO adapters(version, name, run, round, parent, base_model, data_hash, examples, seed, config, status, reason, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![a.version, a.name, a.run, a.round, a.parent, a.base_model, a.data_hash, a.examples, a.seed,
                        a.config.to_string(), a.status, a.reason, a.created],
            )
            .map_err(|e| self.db(e))?;
        Ok(a.version)
    }

    pub fn next_version(&self) -> Result<i64, ImproveError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM adapters",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))
    }

    fn adapter_row(r: &rusqlite::Row) -> rusqlite::Result<AdapterRow> {
        Ok(AdapterRow {
            version: r.get(0)?,
            name: r.get(1)?,
            run: r.get(2)?,
            round: r.get(3)?,
            parent: r.get(4)?,
            base_model: r.get(5)?,
            data_hash: r.get(6)?,
            examples: r.get(7)?,
            seed: r.get(8)?,
            config: json(r.get(9)?),
            status: r.get(10)?,
            reason: r.get(11)?,
            created: r.get(12)?,
        })
    }

    const ADAPTER_COLS: &'static str =
        "version, name, run, round, parent, base_model, data_hash, examples, seed, config, status, reason, created";

    pub fn adapters(&self) -> Result<Vec<AdapterRow>, ImproveError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM adapters ORDER BY version",
                Self::ADAPTER_COLS
            ))
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([], Self::adapter_row)
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok(rows)
    }

    pub fn adapter(&self, version: i64) -> Result<Option<AdapterRow>, ImproveError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM adapters WHERE version = ?1",
                    Self::ADAPTER_COLS
                ),
                params![version],
                Self::adapter_row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    pub fn adapter_by_name(&self, name: &str) -> Result<Option<AdapterRow>, ImproveError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM adapters WHERE name = ?1",
                    Self::ADAPTER_COLS
                ),
                params![name],
                Self::adapter_row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The candidate trained in `round` of `run`, if its row was committed.
    pub fn adapter_for(&self, run: &str, round: i64) -> Result<Option<AdapterRow>, ImproveError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM adapters WHERE run = ?1 AND round = ?2",
                    Self::ADAPTER_COLS
                ),
                params![run, round],
                Self::adapter_row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Rejects a candidate, saying why.
    pub fn reject(&mut self, version: i64, reason: &str) -> Result<(), ImproveError> {
        self.conn
            .execute(
                "UPDATE adapters SET status = 'rejected', reason = ?2 WHERE version = ?1",
                params![version, reason],
            )
            .map_err(|e| self.db(e))?;
        self.log("reject", Some(version), reason)
    }

    fn log(&self, action: &str, version: Option<i64>, note: &str) -> Result<(), ImproveError> {
        self.conn
            .execute(
                "INSERT INTO history(at, action, version, note) VALUES (?1, ?2, ?3, ?4)",
                params![now(), action, version, note],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Makes `version` the current self, in one transaction with its status change.
    pub fn promote(&mut self, version: i64, reason: &str) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "UPDATE adapters SET status = 'promoted', reason = ?2 WHERE version = ?1",
            params![version, reason],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT OR REPLACE INTO current(id, version, changed) VALUES (1, ?1, ?2)",
            params![version, now()],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT INTO history(at, action, version, note) VALUES (?1, 'promote', ?2, ?3)",
            params![now(), version, reason],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    /// The current self's version (`None`: the base model).
    pub fn current(&self) -> Result<Option<i64>, ImproveError> {
        Ok(self
            .conn
            .query_row("SELECT version FROM current WHERE id = 1", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map_err(|e| self.db(e))?
            .flatten())
    }

    /// Returns to `to` (a promoted version, or 0 for the base), or to the promoted version
    /// before the current one. The version left is marked rolled back. One transaction.
    pub fn rollback(&mut self, to: Option<i64>) -> Result<Option<i64>, ImproveError> {
        let cur = self.current()?;
        // From the base, only a named earlier version can be returned to.
        let cur_v = match (cur, to) {
            (Some(v), _) => v,
            (None, Some(v)) if v > 0 => 0,
            (None, _) => {
                return Err(ImproveError::NoRollback(
                    "the current self is already the base model".into(),
                ))
            }
        };
        let target = match to {
            Some(0) => None,
            Some(v) => {
                let a = self.adapter(v)?.ok_or(ImproveError::UnknownVersion(v))?;
                if a.status != PROMOTED && a.status != ROLLED_BACK || v == cur_v {
                    return Err(ImproveError::UnknownVersion(v));
                }
                Some(v)
            }
            None => self
                .conn
                .query_row(
                    "SELECT MAX(version) FROM adapters WHERE status = 'promoted' AND version < ?1",
                    params![cur_v],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(|e| self.db(e))?,
        };
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        // Version 0 (the base) has no row: nothing is marked when leaving it.
        tx.execute(
            "UPDATE adapters SET status = 'rolled_back' WHERE version = ?1",
            params![cur_v],
        )
        .map_err(&db)?;
        if let Some(t) = target {
            tx.execute(
                "UPDATE adapters SET status = 'promoted' WHERE version = ?1",
                params![t],
            )
            .map_err(&db)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO current(id, version, changed) VALUES (1, ?1, ?2)",
            params![target, now()],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT INTO history(at, action, version, note) VALUES (?1, 'rollback', ?2, ?3)",
            params![now(), target, format!("from version {cur_v}")],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        Ok(target)
    }

    /// Every stored evaluation of `subject`, one per skill and held-out set.
    pub fn scores_of(&self, subject: &str) -> Result<Vec<SkillScore>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT skill, evalset, sub, n, correct, format_ok, degenerate FROM metrics
                 WHERE subject = ?1 ORDER BY skill, evalset, rowid",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map(params![subject], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    LevelScore {
                        sub: r.get(2)?,
                        n: r.get::<_, i64>(3)? as usize,
                        correct: r.get::<_, i64>(4)? as usize,
                        format_ok: r.get::<_, i64>(5)? as usize,
                        degenerate: r.get::<_, i64>(6)? as usize,
                        passes: Vec::new(),
                    },
                ))
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        let mut out: Vec<SkillScore> = Vec::new();
        for (skill, evalset, level) in rows {
            match out.last_mut() {
                Some(s) if s.skill == skill && s.evalset == evalset => s.levels.push(level),
                _ => out.push(SkillScore {
                    skill,
                    evalset,
                    levels: vec![level],
                }),
            }
        }
        Ok(out)
    }

    /// Stores an evaluation of `subject` (`base:MODEL` or `adapter:VERSION`) in one transaction.
    pub fn put_score(&mut self, subject: &str, s: &SkillScore) -> Result<(), ImproveError> {
        let db = db_error(&self.path);
        let tx = self.conn.transaction().map_err(&db)?;
        for l in &s.levels {
            tx.execute(
                "INSERT OR REPLACE INTO metrics(subject, skill, sub, evalset, n, correct, format_ok, degenerate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![subject, s.skill, l.sub, s.evalset, l.n as i64, l.correct as i64, l.format_ok as i64, l.degenerate as i64],
            )
            .map_err(&db)?;
            // One character per task, `1` for a pass, in the held-out set's order.
            let passes: String = l
                .passes
                .iter()
                .map(|&p| if p { '1' } else { '0' })
                .collect();
            tx.execute(
                "INSERT OR REPLACE INTO metric_passes(subject, skill, sub, evalset, passes)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![subject, s.skill, l.sub, s.evalset, passes],
            )
            .map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    pub fn score(
        &self,
        subject: &str,
        skill: &str,
        evalset: &str,
    ) -> Result<Option<SkillScore>, ImproveError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT m.sub, m.n, m.correct, m.format_ok, m.degenerate, p.passes FROM metrics m
                 LEFT JOIN metric_passes p ON p.subject = m.subject AND p.skill = m.skill
                   AND p.sub = m.sub AND p.evalset = m.evalset
                 WHERE m.subject = ?1 AND m.skill = ?2 AND m.evalset = ?3 ORDER BY m.rowid",
            )
            .map_err(|e| self.db(e))?;
        let levels = st
            .query_map(params![subject, skill, evalset], |r| {
                Ok(LevelScore {
                    sub: r.get(0)?,
                    n: r.get::<_, i64>(1)? as usize,
                    correct: r.get::<_, i64>(2)? as usize,
                    format_ok: r.get::<_, i64>(3)? as usize,
                    degenerate: r.get::<_, i64>(4)? as usize,
                    passes: r
                        .get::<_, Option<String>>(5)?
                        .unwrap_or_default()
                        .chars()
                        .map(|c| c == '1')
                        .collect(),
                })
            })
            .map_err(|e| self.db(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))?;
        Ok((!levels.is_empty()).then(|| SkillScore {
            skill: skill.into(),
            evalset: evalset.into(),
            levels,
        }))
    }

    pub fn put_ppl(&self, subject: &str, text_hash: &str, ppl: f64) -> Result<(), ImproveError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO guard(subject, text_hash, ppl) VALUES (?1, ?2, ?3)",
                params![subject, text_hash, ppl],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    pub fn ppl(&self, subject: &str, text_hash: &str) -> Result<Option<f64>, ImproveError> {
        self.conn
            .query_row(
                "SELECT ppl FROM guard WHERE subject = ?1 AND text_hash = ?2",
                params![subject, text_hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rounds_proposals_replace_a_killed_tries_and_later_rounds_see_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("ad-reg-proposals-{}", std::process::id()));
        let mut reg = Registry::open(&dir.join("registry.sqlite")).unwrap();
        let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        reg.put_proposals("r", 0, "instructions", &texts(&["Write a.", "Write b."]))
            .unwrap();
        reg.put_proposals("r", 1, "instructions", &texts(&["Write c."]))
            .unwrap();
        reg.put_proposals("r", 1, "instructions", &texts(&["Write d.", "Write e."]))
            .unwrap();
        assert_eq!(
            reg.proposals("r", "instructions", 1).unwrap(),
            ["Write a.", "Write b."]
        );
        assert_eq!(
            reg.proposals("r", "instructions", 2).unwrap(),
            ["Write a.", "Write b.", "Write d.", "Write e."]
        );
        assert!(reg
            .proposals("other", "instructions", 9)
            .unwrap()
            .is_empty());
        drop(reg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
