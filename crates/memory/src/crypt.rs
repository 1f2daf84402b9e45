//! Encryption at rest: a user's database can be kept encrypted with a passphrase (SQLCipher:
//! every page, the write-ahead log included, is AES-256 encrypted and authenticated; the key is
//! derived from the passphrase with PBKDF2-HMAC-SHA512). Without the passphrase the file is
//! indistinguishable from random bytes: no SQLite header, no text.
use crate::error::{MemoryError, Result};
use crate::store::{user_db_path, UserMemory};
use rusqlite::Connection;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// A store's passphrase. Its `Debug` form does not show it, and its bytes are overwritten when
/// it is dropped (not the copies made to hand it to SQLite: the `PRAGMA key` statement rusqlite
/// builds, and SQLite's own).
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Refuses an empty passphrase (it would encrypt with a key anyone can guess) and one
    /// spelled as a raw key (`x'…'`), which SQLCipher would use as the key itself, without
    /// deriving one from it.
    pub fn new(s: impl Into<String>) -> Result<Passphrase> {
        // Held so that dropping it overwrites the bytes, whatever happens below.
        let s = Zeroizing::new(s.into());
        if s.is_empty() {
            return Err(MemoryError::EmptyPassphrase);
        }
        let lower = Zeroizing::new(s.to_ascii_lowercase());
        if lower.starts_with("x'") && lower.ends_with('\'') {
            return Err(MemoryError::RawKeyPassphrase);
        }
        Ok(Passphrase(s))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

/// What a database file's first bytes say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// No file yet, or an empty one: it is created the way it is opened.
    New,
    /// A plain SQLite database.
    Plain,
    /// Not a plain SQLite database: encrypted (or something else altogether).
    Encrypted,
}

/// Reads the header of the database at `path`.
pub fn file_state(path: &Path) -> Result<FileState> {
    let mut head = Vec::with_capacity(16);
    let n = match std::fs::File::open(path) {
        Ok(f) => f
            .take(16)
            .read_to_end(&mut head)
            .map_err(|source| MemoryError::Io {
                path: path.to_path_buf(),
                source,
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::New),
        Err(source) => {
            return Err(MemoryError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(match n {
        0 => FileState::New,
        _ if &head[..n] == b"SQLite format 3\0" => FileState::Plain,
        _ => FileState::Encrypted,
    })
}

/// Gives `conn` its key (before anything else reads the file) and checks that it opens the
/// file: a wrong or missing passphrase is told apart from a damaged file.
pub(crate) fn unlock(conn: &Connection, path: &Path, key: Option<&Passphrase>) -> Result<()> {
    let state = file_state(path)?;
    match (state, key) {
        (FileState::Plain, Some(_)) => {
            return Err(MemoryError::NotEncrypted {
                path: path.to_path_buf(),
            })
        }
        (FileState::Encrypted, None) => {
            return Err(MemoryError::Encrypted {
                path: path.to_path_buf(),
            })
        }
        _ => {}
    }
    if let Some(k) = key {
        conn.pragma_update(None, "key", k.0.as_str())?;
        // A wrong passphrase is reported as an error below; SQLCipher's own log (set to stderr
        // when the key activates it) would print it a second time.
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    }
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase && key.is_some() =>
        {
            Err(MemoryError::WrongPassphrase {
                path: path.to_path_buf(),
            })
        }
        Err(source) => Err(MemoryError::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Rewrites `user`'s database under `dir` with a new passphrase: `old` opens it (`None`: it is
/// plain), `new` encrypts the copy (`None`: a plain copy). Refused while another connection
/// has the store open (a running server or chat): its writes would go to the replaced file.
/// The copy is written beside the original, synced and renamed over it, so an interruption
/// leaves the old file whole; a failed copy is removed.
pub fn rekey(
    dir: &Path,
    user: &str,
    old: Option<&Passphrase>,
    new: Option<&Passphrase>,
) -> Result<()> {
    let path = user_db_path(dir, user)?;
    if file_state(&path)? == FileState::New {
        return Err(MemoryError::NoStore { path });
    }
    let tmp = Scratch::new(path.with_extension("sqlite3.rekey"));
    {
        let mem = UserMemory::open_with(dir, user, old)?;
        let in_use = || MemoryError::InUse { path: path.clone() };
        // Leaving WAL mode needs every other connection gone; this one then keeps an exclusive
        // lock, so nobody can open the store until the copy has replaced it.
        let mode: String = mem
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(|_| in_use())?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(in_use());
        }
        mem.conn
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
            .map_err(|_| in_use())?;
        let version: i64 = mem
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let Some(tmp_str) = tmp.0.to_str() else {
            return Err(MemoryError::BadInput {
                what: "memory directory",
                message: "its path is not valid UTF-8".into(),
            });
        };
        create_private(&tmp.0).map_err(|source| MemoryError::Io {
            path: tmp.0.clone(),
            source,
        })?;
        let key = new.map(|k| k.0.as_str()).unwrap_or("");
        mem.conn.execute(
            "ATTACH DATABASE ?1 AS rekeyed KEY ?2",
            rusqlite::params![tmp_str, key],
        )?;
        mem.conn
            .query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))?;
        mem.conn.execute_batch(&format!(
            "PRAGMA rekeyed.user_version = {version}; DETACH DATABASE rekeyed;"
        ))?;
        std::fs::File::open(&tmp.0)
            .and_then(|f| f.sync_all())
            .map_err(|source| MemoryError::Io {
                path: tmp.0.clone(),
                source,
            })?;
        // Renamed while the lock is held: no one can have opened the old file meanwhile.
        std::fs::rename(&tmp.0, &path).map_err(|source| MemoryError::Io {
            path: path.clone(),
            source,
        })?;
        tmp.keep();
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    // Opening checks the new key and puts the file back in WAL mode.
    UserMemory::open_with(dir, user, new)?;
    Ok(())
}

/// A temporary database file and its journals, removed unless kept.
struct Scratch(std::path::PathBuf, std::cell::Cell<bool>);

impl Scratch {
    fn new(path: std::path::PathBuf) -> Self {
        let s = Scratch(path, std::cell::Cell::new(false));
        s.remove();
        s
    }

    fn keep(&self) {
        self.1.set(true);
    }

    fn remove(&self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.1.get() {
            self.remove();
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create_new(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop)
}
