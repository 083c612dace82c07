//! [`FileStore`]: the token in a JSON file, replaced atomically.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{ConfigFingerprint, StoredToken, TokenStore};
use crate::token::{IssuedAt, Token};

/// Keeps the token in a JSON file, replaced atomically. One process per file.
///
/// A save writes a new temporary file beside the token file, with a random
/// name, created exclusively (it never opens a file or a link that is already
/// there) with mode `0600` on Unix, then `fsync`s it, renames it over the
/// token file and `fsync`s the directory. A crash leaves the old file or the
/// new one, whole (and at worst a `.{name}.*.tmp` file, mode `0600`, that is
/// never read).
///
/// A token file path that is a symbolic link is refused, on save and on
/// load, with an [`io::ErrorKind::InvalidInput`] error: a link planted there
/// would send the refresh token wherever it points. If the link is yours (a
/// mounted secret, say), say so with [`FileStore::follow_symlink`].
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    follow_symlink: bool,
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
        FileStore {
            path: path.into(),
            follow_symlink: false,
        }
    }

    /// Whether a token file path that is a symbolic link is followed: the
    /// file it resolves to is read and replaced (the link is kept). Off by
    /// default: such a path is refused.
    pub fn follow_symlink(mut self, follow: bool) -> Self {
        self.follow_symlink = follow;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file to read and replace: the path, or with `follow_symlink` the
    /// file its link resolves to. A link is refused otherwise.
    fn target(&self) -> io::Result<PathBuf> {
        let is_link = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta.file_type().is_symlink(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !is_link {
            return Ok(self.path.clone());
        }
        if !self.follow_symlink {
            return Err(symlink_refused(&self.path));
        }
        match fs::canonicalize(&self.path) {
            // A dangling link: the file it names is created.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(parent_dir(&self.path).join(fs::read_link(&self.path)?))
            }
            resolved => resolved,
        }
    }

    /// Saves, calling `crash_at` after each step; an `Err` from it stops the
    /// save there, as a crash would (the temporary file is then removed, as
    /// the next save after a real crash would ignore it).
    fn save_steps(
        &self,
        stored: &StoredToken,
        crash_at: &mut dyn FnMut(Step) -> io::Result<()>,
    ) -> io::Result<()> {
        let target = self.target()?;
        let dir = parent_dir(&target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens".into());
        // O_CREAT | O_EXCL with a random name, mode 0600 from the start: a
        // file or link planted beside the token file is never opened.
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        temp.write_all(&to_json(stored))?;
        crash_at(Step::TempWritten)?;
        temp.as_file().sync_all()?;
        crash_at(Step::TempSynced)?;
        temp.persist(&target).map_err(|e| e.error)?;
        crash_at(Step::Renamed)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl TokenStore for FileStore {
    fn load(&self, _: &ConfigFingerprint) -> io::Result<Option<StoredToken>> {
        let bytes = match self.target().and_then(|t| read_regular(&t)) {
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

    fn save(&self, stored: &StoredToken) -> io::Result<()> {
        self.save_steps(stored, &mut |_| Ok(()))
    }
}

fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link; FileStore does not write tokens through one (a link \
             planted there would send the refresh token where it points): give the path \
             of the file itself, or call FileStore::follow_symlink(true) if the link is yours",
            path.display()
        ),
    )
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Reads `path` unless it is a symbolic link, even one swapped in between
/// the check and the open (on Unix the opened file must be the one checked).
fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let checked = fs::symlink_metadata(path)?;
    if checked.file_type().is_symlink() {
        return Err(symlink_refused(path));
    }
    let mut file = fs::File::open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let opened = file.metadata()?;
        if (opened.dev(), opened.ino()) != (checked.dev(), checked.ino()) {
            return Err(symlink_refused(path));
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub(crate) fn to_json(stored: &StoredToken) -> Vec<u8> {
    let token = stored.token();
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
    if let Some(fp) = stored.fingerprint() {
        map.insert(FINGERPRINT.into(), fp.to_string().into());
    }
    if stored.access_token_refused() {
        map.insert(REFUSED.into(), true.into());
    }
    serde_json::to_vec_pretty(&Value::Object(map)).unwrap_or_default()
}

/// The field holding the [`ConfigFingerprint`]; files written before it
/// existed have none.
const FINGERPRINT: &str = "config_fingerprint";
/// Present (`true`) when a resource server refused the access token.
const REFUSED: &str = "access_token_refused";

pub(crate) fn from_json(bytes: &[u8]) -> Result<StoredToken, String> {
    let mut map = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let issued_ms = map
        .remove("issued_at_ms")
        .and_then(|v| v.as_u64())
        .ok_or("no issued_at_ms")?;
    let fingerprint = match map.remove(FINGERPRINT) {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(ConfigFingerprint::from_hex)
                .ok_or("config_fingerprint is not 64 hex digits")?,
        ),
    };
    let refused = match map.remove(REFUSED) {
        None => false,
        Some(v) => v.as_bool().ok_or("access_token_refused is not a boolean")?,
    };
    let issued = UNIX_EPOCH
        .checked_add(Duration::from_millis(issued_ms))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let token = Token::from_map(map, IssuedAt::from_system_time(issued))
        .map_err(|e| e.reason().to_owned())?;
    let stored = match fingerprint {
        Some(fp) => StoredToken::new(token, fp),
        None => StoredToken::without_fingerprint(token),
    };
    Ok(if refused {
        stored.with_access_token_refused()
    } else {
        stored
    })
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

    const FP: ConfigFingerprint = ConfigFingerprint::from_bytes([7; 32]);

    fn token(n: u32) -> StoredToken {
        let token = Token::new(format!("at-{n}"), TokenType::Bearer)
            .with_expires_in(Duration::from_secs(3600))
            .with_refresh_token(format!("rt-{n}"))
            .with_scope("a b");
        StoredToken::new(token, FP)
    }

    fn rt(store: &FileStore) -> Option<String> {
        store.load(&FP).unwrap().and_then(|t| {
            t.token()
                .refresh_token()
                .map(|r| r.expose_secret().to_owned())
        })
    }

    #[test]
    fn round_trip_keeps_what_matters() {
        let d = dir("round");
        let store = FileStore::new(d.join("t.json"));
        let t = token(1);
        store.save(&t).unwrap();
        let stored = store.load(&FP).unwrap().unwrap();
        assert_eq!(stored.fingerprint(), Some(&FP));
        let (back, t) = (stored.token(), t.token());
        assert_eq!(back.access_token(), t.access_token());
        assert_eq!(back.refresh_token(), t.refresh_token());
        assert_eq!(back.scope(), Some("a b"));
        assert_eq!(back.expires_in(), Some(Duration::from_secs(3600)));
        assert!(back.extra().is_empty(), "{:?}", back.extra());
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
        fs::write(
            d.join(".t.json.a1b2c3.tmp"),
            b"{\"access_token\":\"at-2\",\"refr",
        )
        .unwrap();
        assert_eq!(rt(&store).as_deref(), Some("rt-1"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_and_corrupt_files() {
        let d = dir("corrupt");
        let store = FileStore::new(d.join("t.json"));
        assert!(store.load(&FP).unwrap().is_none());
        fs::write(store.path(), b"not json").unwrap();
        let e = store.load(&FP).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        fs::write(
            store.path(),
            br#"{"access_token":"SECRET-AT","issued_at_ms":1,"expires_in":"x"}"#,
        )
        .unwrap();
        let e = store.load(&FP).unwrap_err();
        assert!(!e.to_string().contains("SECRET-AT"), "{e}");
        fs::write(
            store.path(),
            br#"{"access_token":"at","issued_at_ms":1,"config_fingerprint":"abc"}"#,
        )
        .unwrap();
        let e = store.load(&FP).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .ends_with("(config_fingerprint is not 64 hex digits)"),
            "{e}"
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_file_from_before_fingerprints_loads_without_one() {
        let d = dir("old-format");
        let store = FileStore::new(d.join("t.json"));
        fs::write(
            store.path(),
            br#"{"access_token":"at-old","token_type":"Bearer","issued_at_ms":1000}"#,
        )
        .unwrap();
        let stored = store.load(&FP).unwrap().unwrap();
        assert_eq!(stored.fingerprint(), None);
        assert_eq!(stored.token().access_token().expose_secret(), "at-old");
        fs::remove_dir_all(d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_followed_symlink_replaces_its_target_and_stays_a_link() {
        let d = dir("follow");
        let real = d.join("real.json");
        let link = d.join("t.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        // Refused on load too, with the same error.
        let e = FileStore::new(&link).load(&FP).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("FileStore::follow_symlink(true)"),
            "{e}"
        );

        let store = FileStore::new(&link).follow_symlink(true);
        store.save(&token(1)).unwrap(); // a dangling link: its file is created
        store.save(&token(2)).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        let direct = FileStore::new(&real).load(&FP).unwrap().unwrap();
        assert_eq!(direct.token().access_token().expose_secret(), "at-2");
        assert_eq!(rt(&store).as_deref(), Some("rt-2"));
        fs::remove_dir_all(d).unwrap();
    }
}
