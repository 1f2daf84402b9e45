//! Crash-safe file writes: a crash leaves the old file or the new one, never half of one.
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn tmp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Syncs a directory so that a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
    }
    let _ = dir;
    Ok(())
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = tmp_beside(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::io(path, e));
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Concatenates `sources` into `dest` atomically, hashing on the way; `progress(done, total)` is
/// called after each chunk. Returns (sha256 hex, size).
pub fn copy_hashing(
    sources: &[PathBuf],
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(String, u64), StoreError> {
    let total: u64 = sources
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let tmp = tmp_beside(dest);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result = (|| -> Result<(), StoreError> {
        let mut out = std::fs::File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut buf = vec![0u8; 1 << 20];
        for src in sources {
            let mut f = std::fs::File::open(src).map_err(|e| StoreError::io(src, e))?;
            loop {
                let n = f.read(&mut buf).map_err(|e| StoreError::io(src, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| StoreError::io(&tmp, e))?;
                size += n as u64;
                progress(size, total);
            }
        }
        out.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| StoreError::io(dest, e))?;
        sync_dir(dest.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok((hex(&hasher.finalize()), size))
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut f = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Names become file or directory names: keep them to a safe alphabet.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName {
            kind,
            name: name.to_string(),
        })
    }
}
