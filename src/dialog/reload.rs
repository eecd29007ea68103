//! The flow a server runs, reloadable while it runs: [`FlowStore`] holds the current valid
//! [`Flow`]; a reload that finds the file invalid logs every problem (file:line:column) and keeps
//! serving the last valid flow. Calls in progress keep the flow they started with (an
//! `Arc<Flow>`); new calls get the current one.
//!
//! When a reload happens is the shell's choice: [`FlowStore::reload`] on request, or
//! [`FlowStore::watch`], which reloads on SIGHUP and also polls the file's contents every
//! `poll` interval (contents, not mtime: an edit within the same second, or a copy that keeps
//! the mtime, is still noticed; a flow file is a few KB, so reading it every few seconds is
//! free).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::flow::{Flow, FlowError};

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The file changed and its new version is now current.
    Replaced,
    /// The file has not changed since the last look (only from [`FlowStore::reload_if_changed`]).
    Unchanged,
}

/// The current valid flow of one file.
pub struct FlowStore {
    path: PathBuf,
    current: RwLock<Arc<Flow>>,
    /// Hash of the contents last looked at, valid or not (an invalid file is reported once, not
    /// at every poll).
    seen: Mutex<u64>,
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn read(path: &Path) -> Result<Vec<u8>, FlowError> {
    std::fs::read(path).map_err(|source| FlowError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(bytes: &[u8], path: &Path) -> Result<Flow, FlowError> {
    let text = std::str::from_utf8(bytes).map_err(|e| FlowError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    Flow::parse(text, path)
}

impl FlowStore {
    /// Loads and checks the flow; an invalid file is an error (a server refuses to start).
    pub fn load(path: impl Into<PathBuf>) -> Result<FlowStore, FlowError> {
        let path = path.into();
        let bytes = read(&path)?;
        let flow = parse(&bytes, &path)?;
        Ok(FlowStore {
            current: RwLock::new(Arc::new(flow)),
            seen: Mutex::new(digest(&bytes)),
            path,
        })
    }

    /// The flow for a new call.
    pub fn current(&self) -> Arc<Flow> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file and makes it current if it is valid. If not, the error (every problem
    /// with file:line:column) is logged and returned, and the last valid flow stays current.
    pub fn reload(&self) -> Result<Reloaded, FlowError> {
        self.reload_inner(true)
    }

    /// [`reload`](Self::reload) only if the file's contents changed since the last look.
    pub fn reload_if_changed(&self) -> Result<Reloaded, FlowError> {
        self.reload_inner(false)
    }

    fn reload_inner(&self, always: bool) -> Result<Reloaded, FlowError> {
        let result = read(&self.path).and_then(|bytes| {
            let d = digest(&bytes);
            {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if !always && *seen == d {
                    return Ok(Reloaded::Unchanged);
                }
                *seen = d;
            }
            let flow = parse(&bytes, &self.path)?;
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(flow);
            Ok(Reloaded::Replaced)
        });
        match &result {
            Ok(Reloaded::Replaced) => {
                tracing::info!(file = %self.path.display(), "flow reloaded");
            }
            Ok(Reloaded::Unchanged) => {}
            Err(FlowError::Invalid(problems)) => {
                for p in problems {
                    tracing::warn!(problem = %p, "flow reload refused");
                }
                tracing::warn!(
                    file = %self.path.display(),
                    "flow reload refused; still serving the last valid flow"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "flow reload refused; still serving the last valid flow");
            }
        }
        result
    }

    /// Reloads on SIGHUP (always) and when the file's contents change (checked every `poll`),
    /// until the task is aborted. The SIGHUP handler is installed before this returns, so a
    /// SIGHUP sent afterwards never kills the process. Needs a tokio runtime.
    pub fn watch(self: Arc<Self>, poll: Duration) -> std::io::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    _ = hup.recv() => true,
                };
                #[cfg(not(unix))]
                let forced = {
                    tick.tick().await;
                    false
                };
                // errors are logged inside; the last valid flow stays
                let _ = if forced {
                    self.reload()
                } else {
                    self.reload_if_changed()
                };
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../flows/clinic.yaml");

    fn temp_flow(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clinic.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn renamed(text: &str, name: &str) -> String {
        text.replacen("name: clinic", &format!("name: {name}"), 1)
    }

    #[test]
    fn an_invalid_flow_is_refused_at_load_with_file_and_line() {
        let broken = SHIPPED.replacen("next: how_can_i_help", "next: nowhere", 1);
        let (_dir, path) = temp_flow(&broken);
        let Err(e) = FlowStore::load(&path) else {
            panic!("an invalid flow loaded");
        };
        let line = broken
            .lines()
            .position(|l| l.contains("next: nowhere"))
            .unwrap()
            + 1;
        let text = e.to_string();
        assert!(
            text.contains(&format!("{}:{line}:", path.display())),
            "{text}"
        );
        assert!(text.contains("nowhere"), "{text}");
    }

    #[test]
    fn a_valid_edit_replaces_the_flow_and_an_invalid_one_keeps_the_last_valid() {
        let (_dir, path) = temp_flow(SHIPPED);
        let store = FlowStore::load(&path).unwrap();
        assert_eq!(store.current().name, "clinic");
        assert_eq!(store.reload_if_changed().unwrap(), Reloaded::Unchanged);

        let in_call = store.current();
        std::fs::write(&path, renamed(SHIPPED, "clinic_v2")).unwrap();
        assert_eq!(store.reload_if_changed().unwrap(), Reloaded::Replaced);
        assert_eq!(store.current().name, "clinic_v2");
        assert_eq!(in_call.name, "clinic", "a call in progress keeps its flow");

        // YAML error, unknown key, unknown step: each refused, v2 stays.
        for bad in [
            format!("{}\n  - id: [unclosed\n", renamed(SHIPPED, "clinic_v3")),
            renamed(SHIPPED, "clinic_v3").replacen("start: greet", "start: greet\nstray: 1", 1),
            renamed(SHIPPED, "clinic_v3").replacen("book: book_when", "book: no_such_step", 1),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let err = store.reload_if_changed().unwrap_err();
            assert!(
                matches!(&err, FlowError::Invalid(p) if !p.is_empty() && p[0].line > 0),
                "{err}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
            assert_eq!(store.current().name, "clinic_v2");
            // the same bad contents are not re-reported at every poll
            assert_eq!(store.reload_if_changed().unwrap(), Reloaded::Unchanged);
        }

        // a deleted file: an error, and v2 stays
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.reload(), Err(FlowError::Read { .. })));
        assert_eq!(store.current().name, "clinic_v2");

        std::fs::write(&path, renamed(SHIPPED, "clinic_v4")).unwrap();
        assert_eq!(store.reload().unwrap(), Reloaded::Replaced);
        assert_eq!(store.current().name, "clinic_v4");
    }

    async fn wait_for(store: &FlowStore, name: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.current().name != name {
            assert!(
                tokio::time::Instant::now() < deadline,
                "flow never became {name}; still {}",
                store.current().name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn watch_picks_up_edits_by_polling() {
        let (_dir, path) = temp_flow(SHIPPED);
        let store = Arc::new(FlowStore::load(&path).unwrap());
        let task = store.clone().watch(Duration::from_millis(50)).unwrap();
        std::fs::write(&path, "name: [broken").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.current().name, "clinic");
        std::fs::write(&path, renamed(SHIPPED, "polled")).unwrap();
        wait_for(&store, "polled").await;
        task.abort();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn watch_reloads_on_sighup() {
        let (_dir, path) = temp_flow(SHIPPED);
        let store = Arc::new(FlowStore::load(&path).unwrap());
        // polling once an hour: only the signal can make it reload within the test
        let task = store.clone().watch(Duration::from_secs(3600)).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // the first tick has fired
        std::fs::write(&path, renamed(SHIPPED, "hupped")).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(&store, "hupped").await;
        task.abort();
    }
}
