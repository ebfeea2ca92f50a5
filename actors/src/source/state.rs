//! Where sources keep the little they must remember across restarts: a PingSource's last
//! delivered schedule point, an ApiServerSource's last delivered resourceVersion.
//!
//! A source saves its position only after the sink accepted the event it stands for, so a restart
//! resumes where delivery stopped: nothing is skipped, and at most the events of the last moment
//! before a crash are sent again (with the same ids).
//!
//! Two stores: [`FileStateStore`] (one file per key under `--state-dir`; the default on one
//! machine) and, in a cluster, ConfigMaps (in `knactor-kube`), so that the replica that takes over
//! a source after a failover reads where the previous one stopped.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("source state {key}: {message}")]
pub struct StateError {
    pub key: String,
    pub message: String,
}

/// Small string values by key (`pingsource/<uid>`...).
#[async_trait]
pub trait StateStore: fmt::Debug + Send + Sync + 'static {
    async fn load(&self, key: &str) -> Result<Option<String>, StateError>;
    /// Durable when it returns.
    async fn save(&self, key: &str, value: &str) -> Result<(), StateError>;
}

/// One file per key in a directory, replaced atomically (write, fsync, rename).
#[derive(Debug)]
pub struct FileStateStore {
    dir: PathBuf,
}

impl FileStateStore {
    /// Creates the directory when it is missing.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys are ours (kind/uid or kind/namespace/name), but keep the file name plain anyway.
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.json"))
    }

    fn error(key: &str, error: impl std::fmt::Display) -> StateError {
        StateError {
            key: key.to_string(),
            message: error.to_string(),
        }
    }
}

#[async_trait]
impl StateStore for FileStateStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StateError> {
        match std::fs::read_to_string(self.path(key)) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Self::error(key, error)),
        }
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), StateError> {
        let path = self.path(key);
        let temporary = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(value.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|error| Self::error(key, error))
    }
}

/// In memory: for tests, and for nodes told to keep no state.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    values: Mutex<HashMap<String, String>>,
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self, key: &str) -> Result<Option<String>, StateError> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        Ok(values.get(key).cloned())
    }

    async fn save(&self, key: &str, value: &str) -> Result<(), StateError> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_file_store_keeps_values_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(&dir.path().join("state")).unwrap();
        assert_eq!(store.load("pingsource/a/b").await.unwrap(), None);
        store.save("pingsource/a/b", "one").await.unwrap();
        store.save("pingsource/a/b", "two").await.unwrap();
        let again = FileStateStore::open(&dir.path().join("state")).unwrap();
        assert_eq!(
            again.load("pingsource/a/b").await.unwrap().as_deref(),
            Some("two")
        );
        assert_eq!(again.load("pingsource/a/c").await.unwrap(), None);
    }
}
