//! Persisting tokens, so a restart (or a crash) never loses the newest
//! refresh token.
//!
//! A [`TokenCache`](crate::cache::TokenCache) built with
//! [`TokenCacheBuilder::store`](crate::cache::TokenCacheBuilder::store)
//! loads the stored token when it is built (its refresh token replaces the
//! one configured, being newer; its access token is used while it is valid)
//! and saves every token it fetches **before** using it. When a server
//! rotates refresh tokens, the old one stops working the moment the new one
//! is issued, so the new one must be on disk before anything else happens.
//!
//! [`FileStore`] writes atomically: a temporary file in the same directory,
//! `fsync`, `rename` over the old file, `fsync` of the directory. A crash at
//! any point leaves either the old file or the new one, whole. On Unix the
//! file is created with mode `0600`. [`MemoryStore`] keeps the token in
//! memory (tests, or sharing between caches in one process).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth2::store::{FileStore, TokenStore};
//! use tower_oauth2::token::{Token, TokenType};
//!
//! let dir = std::env::temp_dir().join(format!("tower-oauth2-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = FileStore::new(dir.join("tokens.json"));
//! assert!(store.load()?.is_none());
//!
//! let token = Token::new("at-1", TokenType::Bearer)
//!     .with_expires_in(Duration::from_secs(3600))
//!     .with_refresh_token("rt-1");
//! store.save(&token)?;
//! let loaded = store.load()?.unwrap();
//! assert_eq!(loaded.refresh_token().unwrap().expose_secret(), "rt-1");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::token::{IssuedAt, Token};

/// Where a cache keeps its token between runs.
///
/// `save` is called on a blocking thread after every fetch, before the token
/// is used; `load` once, when the cache is built.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, if any.
    fn load(&self) -> io::Result<Option<Token>>;
    /// Stores `token`, replacing what was stored. Must not return before the
    /// token is durable.
    fn save(&self, token: &Token) -> io::Result<()>;
}

/// Keeps the token in memory.
#[derive(Default)]
pub struct MemoryStore {
    token: Mutex<Option<Token>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.token.lock().map(|t| t.is_some()).unwrap_or(false);
        f.debug_struct("MemoryStore")
            .field("holds_token", &held)
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self) -> io::Result<Option<Token>> {
        Ok(self.token.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save(&self, token: &Token) -> io::Result<()> {
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(())
    }
}

/// Keeps the token in a JSON file, replaced atomically. One process per file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

/// The steps of an atomic save, for crash tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    TempWritten,
    TempSynced,
    Renamed,
}

impl FileStore {
    /// A store at `path`. The directory must exist; the file need not.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens".into());
        // A fixed name: the next save overwrites what a crash left behind.
        self.path.with_file_name(format!(".{name}.tmp"))
    }

    /// Saves, calling `crash_at` after each step; an `Err` from it stops the
    /// save there, as a crash would.
    fn save_steps(
        &self,
        token: &Token,
        crash_at: &mut dyn FnMut(Step) -> io::Result<()>,
    ) -> io::Result<()> {
        let bytes = to_json(token);
        let temp = self.temp_path();
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(&bytes)?;
        crash_at(Step::TempWritten)?;
        file.sync_all()?;
        drop(file);
        crash_at(Step::TempSynced)?;
        fs::rename(&temp, &self.path)?;
        crash_at(Step::Renamed)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> io::Result<Option<Token>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        from_json(&bytes).map(Some).map_err(|reason| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a stored token ({reason})", self.path.display()),
            )
        })
    }

    fn save(&self, token: &Token) -> io::Result<()> {
        self.save_steps(token, &mut |_| Ok(()))
    }
}

fn to_json(token: &Token) -> Vec<u8> {
    let mut map = Map::new();
    map.insert(
        "access_token".into(),
        token.access_token().expose_secret().into(),
    );
    map.insert("token_type".into(), token.token_type().as_str().into());
    if let Some(d) = token.expires_in() {
        map.insert("expires_in".into(), d.as_secs().into());
    }
    if let Some(rt) = token.refresh_token() {
        map.insert("refresh_token".into(), rt.expose_secret().into());
    }
    if let Some(s) = token.scope() {
        map.insert("scope".into(), s.into());
    }
    let issued = token
        .issued_at()
        .system_time()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    map.insert("issued_at_ms".into(), (issued.as_millis() as u64).into());
    serde_json::to_vec_pretty(&Value::Object(map)).unwrap_or_default()
}

fn from_json(bytes: &[u8]) -> Result<Token, String> {
    let mut map = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let issued_ms = map
        .remove("issued_at_ms")
        .and_then(|v| v.as_u64())
        .ok_or("no issued_at_ms")?;
    let issued = UNIX_EPOCH
        .checked_add(Duration::from_millis(issued_ms))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Token::from_map(map, IssuedAt::from_system_time(issued)).map_err(|e| e.reason().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenType;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tower-oauth2-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn token(n: u32) -> Token {
        Token::new(format!("at-{n}"), TokenType::Bearer)
            .with_expires_in(Duration::from_secs(3600))
            .with_refresh_token(format!("rt-{n}"))
            .with_scope("a b")
    }

    fn rt(store: &FileStore) -> Option<String> {
        store
            .load()
            .unwrap()
            .and_then(|t| t.refresh_token().map(|r| r.expose_secret().to_owned()))
    }

    #[test]
    fn round_trip_keeps_what_matters() {
        let d = dir("round");
        let store = FileStore::new(d.join("t.json"));
        let t = token(1);
        store.save(&t).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.access_token(), t.access_token());
        assert_eq!(back.refresh_token(), t.refresh_token());
        assert_eq!(back.scope(), Some("a b"));
        assert_eq!(back.expires_in(), Some(Duration::from_secs(3600)));
        let drift = back
            .issued_at()
            .system_time()
            .duration_since(t.issued_at().system_time())
            .unwrap_or_else(|e| e.duration());
        assert!(drift < Duration::from_millis(2), "{drift:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_token_whole() {
        for (crash, want) in [
            (Step::TempWritten, "rt-1"),
            (Step::TempSynced, "rt-1"),
            (Step::Renamed, "rt-2"),
        ] {
            let d = dir(&format!("crash-{crash:?}"));
            let store = FileStore::new(d.join("t.json"));
            store.save(&token(1)).unwrap();
            let err = store
                .save_steps(&token(2), &mut |step| {
                    if step == crash {
                        Err(io::Error::other("crash"))
                    } else {
                        Ok(())
                    }
                })
                .unwrap_err();
            assert_eq!(err.to_string(), "crash");
            assert_eq!(rt(&store).as_deref(), Some(want), "{crash:?}");
            // The next save after the "restart" works and cleans up.
            store.save(&token(3)).unwrap();
            assert_eq!(rt(&store).as_deref(), Some("rt-3"));
            let leftovers: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(leftovers, ["t.json"], "{crash:?}");
            fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn a_torn_temp_file_is_ignored() {
        let d = dir("torn");
        let store = FileStore::new(d.join("t.json"));
        store.save(&token(1)).unwrap();
        fs::write(store.temp_path(), b"{\"access_token\":\"at-2\",\"refr").unwrap();
        assert_eq!(rt(&store).as_deref(), Some("rt-1"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_and_corrupt_files() {
        let d = dir("corrupt");
        let store = FileStore::new(d.join("t.json"));
        assert!(store.load().unwrap().is_none());
        fs::write(store.path(), b"not json").unwrap();
        let e = store.load().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        fs::write(
            store.path(),
            br#"{"access_token":"SECRET-AT","issued_at_ms":1,"expires_in":"x"}"#,
        )
        .unwrap();
        let e = store.load().unwrap_err();
        assert!(!e.to_string().contains("SECRET-AT"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn memory_store() {
        let m = MemoryStore::new();
        assert!(m.load().unwrap().is_none());
        m.save(&token(7)).unwrap();
        assert_eq!(
            m.load().unwrap().unwrap().access_token().expose_secret(),
            "at-7"
        );
        assert_eq!(format!("{m:?}"), "MemoryStore { holds_token: true }");
    }
}
