//! The series table on disk, between a graceful stop and the next start.
//!
//! Written only when the drain finished and the final offsets were
//! committed, so the state covers exactly the samples Kafka will not
//! deliver again; samples it covers that do come again (a failed final
//! commit) are older than their series' last one and dropped as such.
//! Read once: the file is removed as it is taken, so a process that
//! crashes later starts cold rather than from state older than its
//! offsets.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::series::TableSnapshot;
use crate::error::{Error, Result};

/// File format tag; the number changes with any change to the saved types
/// that an older file could not be read into. (Mean-std's window went from
/// double to single precision without one: serde reads a double into a
/// single, so a file from before resumes, its values rounded as the window
/// now stores them; tested in the threshold's module.)
const MAGIC: &[u8; 8] = b"ANOMST03";

/// Writes `snapshot` to `path` atomically (a sibling file, then a rename).
pub fn save(path: &Path, snapshot: &TableSnapshot) -> Result<()> {
    let mut bytes = Vec::new();
    ciborium::into_writer(snapshot, &mut bytes)
        .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))?;
    let partial = sibling(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(MAGIC)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    };
    write().map_err(|e| Error::io(path, e))
}

/// Reads and removes the state at `path`; `None` when there is none.
pub fn take(path: &Path) -> Result<Option<TableSnapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    let corrupt = |reason: String| Error::io(path, std::io::Error::other(reason));
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(corrupt("not an anomalyd state file of this version".into()));
    };
    ciborium::from_reader(body)
        .map(Some)
        .map_err(|e| corrupt(format!("unreadable state: {e}")))
}

fn sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}
