//! Response cache: an embedded redb store keyed by (model, messages, parameters, seed).
//!
//! Every answer is committed durably as it arrives, so a killed run that is started again
//! finds what it already paid for. Errors are never cached. The request id is not part of the
//! key (the same question asked under another id is a hit).

use crate::{BatchResult, Completion, Generator, LlmError, Request};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("responses");

pub struct Cache {
    db: Database,
    path: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    /// Opens (or creates) the cache file. One another process holds open is refused with its
    /// path. A damaged one (redb reports corruption, or reading it back fails or panics) holds
    /// nothing that cannot be asked again: it is moved aside to `<name>.damaged-<unix time>`
    /// with a warning, and a new cache starts.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LlmError> {
        let path = path.as_ref().to_path_buf();
        let err = |reason: String| LlmError::Cache {
            path: path.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create folder: {e}")))?;
        }
        let db = match open_checked(&path) {
            Ok(db) => db,
            Err(Damage::InUse(e)) => {
                return Err(err(format!(
                    "{e}: another process is using it; wait for it to end"
                )));
            }
            Err(Damage::Other(e)) => return Err(err(e)),
            Err(Damage::Damaged(why)) if !starts_like_redb(&path) => {
                return Err(err(format!(
                    "not a paperworks response cache ({why}); it is left as it is: name \
                     another cache file or move this one away"
                )));
            }
            Err(Damage::Damaged(why)) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut aside = path.clone().into_os_string();
                aside.push(format!(".damaged-{stamp}"));
                std::fs::rename(&path, &aside)
                    .map_err(|e| err(format!("damaged ({why}) and cannot be moved aside: {e}")))?;
                tracing::warn!(
                    "{}: damaged ({why}); moved to {} and starting a new cache",
                    path.display(),
                    std::path::Path::new(&aside).display()
                );
                match open_checked(&path) {
                    Ok(db) => db,
                    Err(Damage::InUse(e) | Damage::Other(e) | Damage::Damaged(e)) => {
                        return Err(err(e));
                    }
                }
            }
        };
        Ok(Cache {
            db,
            path,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (hits, misses) since opening.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// The cache key: SHA-256 of the canonical JSON of model, messages (or raw prompt) and
    /// parameters, with each image standing as the hash of its bytes (so renaming an image file
    /// hits, editing it misses).
    pub fn key(model: &str, req: &Request) -> [u8; 32] {
        let messages: Vec<crate::ChatMessage> = req
            .messages
            .iter()
            .map(|m| crate::ChatMessage {
                role: m.role.clone(),
                content: crate::image::key_content(&m.content),
            })
            .collect();
        let mut canon = serde_json::json!({
            "model": model,
            "messages": messages,
            "params": req.params,
        });
        // only present when set, so the keys of every chat request stay as they were
        if let Some(p) = &req.prompt {
            canon["prompt"] = serde_json::Value::from(p.as_str());
        }
        Sha256::digest(canon.to_string().as_bytes()).into()
    }

    fn err(&self, e: impl std::fmt::Display) -> LlmError {
        LlmError::Cache {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Result<Option<Completion>, LlmError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(TABLE).map_err(|e| self.err(e))?;
        let Some(v) = table.get(key.as_slice()).map_err(|e| self.err(e))? else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match serde_json::from_slice::<Completion>(v.value()) {
            Ok(c) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(c))
            }
            Err(e) => {
                tracing::warn!("{}: unreadable entry ignored: {e}", self.path.display());
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Stores one answer durably (committed and synced before returning).
    pub fn put(&self, key: &[u8; 32], c: &Completion) -> Result<(), LlmError> {
        let bytes = serde_json::to_vec(c).map_err(|e| self.err(e))?;
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| self.err(e))?;
            table
                .insert(key.as_slice(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Entries stored.
    pub fn len(&self) -> Result<u64, LlmError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(TABLE).map_err(|e| self.err(e))?;
        table.len().map_err(|e| self.err(e))
    }

    pub fn is_empty(&self) -> Result<bool, LlmError> {
        Ok(self.len()? == 0)
    }
}

/// Whether the file begins with redb's magic number: only then is it ours to move aside.
fn starts_like_redb(path: &Path) -> bool {
    use std::io::Read;
    const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
    let mut head = [0u8; 9];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| head == MAGIC)
}

enum Damage {
    InUse(String),
    Damaged(String),
    Other(String),
}

/// Opens or creates the database, makes sure the table exists, and reads every entry back
/// once, so a damaged file is found at open instead of in the middle of a run. redb can
/// panic on a damaged page; the panic is caught here and counts as damage.
fn open_checked(path: &Path) -> Result<Database, Damage> {
    use redb::{DatabaseError, ReadableTable};
    let opened = std::panic::catch_unwind(|| Database::create(path));
    let db = match opened {
        Err(_) => return Err(Damage::Damaged("redb panicked opening it".into())),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(Damage::InUse("already open".into()));
        }
        Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e)))) => {
            return Err(Damage::Other(e.to_string()));
        }
        Ok(Err(e)) => return Err(Damage::Damaged(e.to_string())),
        Ok(Ok(db)) => db,
    };
    let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(TABLE).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        let txn = db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
        for entry in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = entry.map_err(|e| e.to_string())?;
            std::hint::black_box((k.value().len(), v.value().len()));
        }
        Ok::<(), String>(())
    }));
    match check {
        Ok(Ok(())) => Ok(db),
        Ok(Err(e)) => Err(Damage::Damaged(e)),
        Err(_) => Err(Damage::Damaged("redb panicked reading it".into())),
    }
}

/// A generator behind the response cache.
pub struct Cached<G> {
    inner: G,
    cache: Arc<Cache>,
}

impl<G: Generator> Cached<G> {
    pub fn new(inner: G, cache: Arc<Cache>) -> Self {
        Cached { inner, cache }
    }
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    pub fn inner(&self) -> &G {
        &self.inner
    }
}

fn hit(mut c: Completion, id: &str) -> Completion {
    c.id = id.to_string();
    c.cached = true;
    c
}

impl<G: Generator> Generator for Cached<G> {
    fn model(&self) -> String {
        self.inner.model()
    }

    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        let key = Cache::key(&self.inner.model(), req);
        if let Some(c) = self.cache.get(&key)? {
            return Ok(hit(c, &req.id));
        }
        let c = self.inner.generate(req)?;
        self.cache.put(&key, &c)?;
        Ok(c)
    }

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        let model = self.inner.model();
        let mut misses = Vec::new();
        let mut keys = std::collections::HashMap::new();
        for r in reqs {
            let key = Cache::key(&model, &r);
            match self.cache.get(&key) {
                Ok(Some(c)) => on_result(BatchResult {
                    result: Ok(hit(c, &r.id)),
                    id: r.id,
                }),
                Ok(None) => {
                    keys.insert(r.id.clone(), key);
                    misses.push(r);
                }
                Err(e) => on_result(BatchResult {
                    id: r.id,
                    result: Err(e),
                }),
            }
        }
        if misses.is_empty() {
            return;
        }
        self.inner.generate_batch(misses, &mut |mut r| {
            if let (Ok(c), Some(key)) = (&r.result, keys.get(&r.id))
                && let Err(e) = self.cache.put(key, c)
            {
                r.result = Err(e);
            }
            on_result(r)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Choice, GenParams, Usage};
    use std::sync::Mutex;

    /// Answers with a counter so a second call is visible.
    struct Counting(Mutex<u32>);
    impl Generator for Counting {
        fn model(&self) -> String {
            "count".into()
        }
        fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            Ok(Completion {
                id: req.id.clone(),
                model: "count".into(),
                choices: vec![Choice {
                    text: format!("answer {n}"),
                    finish_reason: "stop".into(),
                }],
                usage: Usage::default(),
                latency_ms: 1.0,
                cached: false,
            })
        }
    }

    fn req(id: &str, q: &str, seed: u64) -> Request {
        Request::user(
            id,
            q,
            GenParams {
                seed: Some(seed),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_second_run_pays_nothing_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        {
            let g = Cached::new(
                Counting(Mutex::new(0)),
                Arc::new(Cache::open(&path).unwrap()),
            );
            let mut got = Vec::new();
            g.generate_batch(vec![req("a", "q1", 1), req("b", "q2", 1)], &mut |r| {
                got.push(r.result.unwrap())
            });
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|c| !c.cached));
        }
        let g = Cached::new(
            Counting(Mutex::new(100)),
            Arc::new(Cache::open(&path).unwrap()),
        );
        let c = g.generate(&req("other-id", "q1", 1)).unwrap();
        assert!(c.cached);
        assert_eq!(c.id, "other-id");
        assert!(c.text().starts_with("answer "));
        assert_eq!(*g.inner().0.lock().unwrap(), 100, "no new generation");
        // a different seed is a different key
        let c = g.generate(&req("x", "q1", 2)).unwrap();
        assert!(!c.cached);
        assert_eq!(c.text(), "answer 101");
        assert_eq!(g.cache().len().unwrap(), 3);
    }

    #[test]
    fn a_damaged_cache_is_moved_aside_and_rebuilt_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        {
            let g = Cached::new(
                Counting(Mutex::new(0)),
                Arc::new(Cache::open(&path).unwrap()),
            );
            for i in 0..50 {
                g.generate(&req(&format!("r{i}"), &format!("question {i}"), 1))
                    .unwrap();
            }
        }
        let clean = std::fs::read(&path).unwrap();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        // flip bytes of one page after another (the header page too): every open either
        // succeeds with a usable cache or rebuilds one, never panics
        let page = 4096;
        for p in 0..clean.len() / page {
            let mut bytes = clean.clone();
            for b in &mut bytes[p * page + 16..p * page + 80] {
                *b ^= 0xA5;
            }
            std::fs::write(&path, &bytes).unwrap();
            let cache = std::panic::catch_unwind(|| Cache::open(&path))
                .unwrap_or_else(|_| panic!("page {p}: Cache::open panicked"));
            let cache = cache.unwrap_or_else(|e| panic!("page {p}: {e}"));
            let g = Cached::new(Counting(Mutex::new(0)), Arc::new(cache));
            g.generate(&req("new", "a new question", 9)).unwrap();
            for f in std::fs::read_dir(dir.path()).unwrap() {
                let f = f.unwrap().path();
                if f.to_string_lossy().contains(".damaged-") {
                    std::fs::remove_file(f).unwrap();
                }
            }
        }
        std::panic::set_hook(default_hook);
    }

    #[test]
    fn a_file_that_is_not_a_cache_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        std::fs::write(&path, b"this is not a database, it is my notes").unwrap();
        let e = Cache::open(&path).err().unwrap().to_string();
        assert!(e.contains("cache.redb"), "{e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not a database, it is my notes"
        );
    }
}
