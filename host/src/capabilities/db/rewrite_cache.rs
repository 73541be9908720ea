//! Rewrites kept in memory: a module sends the same few statement texts on
//! every request, and parsing, rewriting and printing one costs far more
//! than looking it up.
//!
//! An entry is keyed by everything [`SqlScope::rewrite`]'s answer depends
//! on — the scope's key (the module and the tables it may read, see
//! [`SqlScope::key`]), the statement's source and the exact text — so a hit
//! is the answer the rewriter would give again, refusals included (a
//! module that keeps sending a refused text is refused from memory).
//! Scopes with the same key share entries: every tenant running the same
//! module version with the same dependencies.
//!
//! The cache is bounded by the bytes it holds, in two halves: entries go
//! into the young half; when it is full the old half is dropped and the
//! young one becomes old; a hit in the old half moves back to the young
//! one. What is in steady use stays; the rest ages out within two turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::scoped_sql::{RewrittenStatement, SqlRefusal, SqlScope, StatementSource};

/// Bytes of keys and answers one half holds: the cache holds at most twice
/// this (plus map overhead).
pub const HALF_BYTES: usize = 8 * 1024 * 1024;

/// A rewrite's answer as cached.
pub type Answer = Result<Arc<[RewrittenStatement]>, SqlRefusal>;

type Key = (Arc<str>, StatementSource, String);

#[derive(Default)]
struct Halves {
    young: HashMap<Key, Answer>,
    young_bytes: usize,
    old: HashMap<Key, Answer>,
}

/// The process's rewrite cache.
pub struct RewriteCache {
    halves: Mutex<Halves>,
    half_bytes: usize,
}

fn weight(key: &Key, answer: &Answer) -> usize {
    let answer = match answer {
        Ok(statements) => statements.iter().map(|s| s.sql.len() + 16).sum(),
        Err(refusal) => refusal.to_string().len(),
    };
    // The scope key is shared (an `Arc`) and not counted; 64 bytes stand
    // for the entry's own overhead in the map.
    key.2.len() + answer + 64
}

impl RewriteCache {
    /// An empty cache whose halves hold `half_bytes` each.
    pub fn new(half_bytes: usize) -> Self {
        RewriteCache {
            halves: Mutex::new(Halves::default()),
            half_bytes,
        }
    }

    /// The cache every tenant connection of this process shares.
    pub fn global() -> &'static RewriteCache {
        static CACHE: OnceLock<RewriteCache> = OnceLock::new();
        CACHE.get_or_init(|| RewriteCache::new(HALF_BYTES))
    }

    /// The cached answer for `sql` from `source` in `scope`, if any.
    pub fn get(&self, scope: &SqlScope, source: StatementSource, sql: String) -> Lookup {
        let key = (scope.key().clone(), source, sql);
        let mut halves = self.halves.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(answer) = halves.young.get(&key) {
            return Lookup::Hit(answer.clone());
        }
        if let Some((key, answer)) = halves.old.remove_entry(&key) {
            let found = answer.clone();
            self.insert(&mut halves, key, answer);
            return Lookup::Hit(found);
        }
        Lookup::Miss(MissKey(key))
    }

    /// Keeps `answer` for the key a [`Lookup::Miss`] gave.
    pub fn put(&self, key: MissKey, answer: Answer) {
        let mut halves = self.halves.lock().unwrap_or_else(|p| p.into_inner());
        self.insert(&mut halves, key.0, answer);
    }

    fn insert(&self, halves: &mut Halves, key: Key, answer: Answer) {
        let weight = weight(&key, &answer);
        if weight > self.half_bytes {
            return;
        }
        if halves.young_bytes + weight > self.half_bytes {
            halves.old = std::mem::take(&mut halves.young);
            halves.young_bytes = 0;
        }
        halves.young_bytes += weight;
        halves.young.insert(key, answer);
    }
}

/// What [`RewriteCache::get`] found.
pub enum Lookup {
    /// The answer the rewriter gave before.
    Hit(Answer),
    /// Not cached: rewrite, then [`RewriteCache::put`] the answer under
    /// this key.
    Miss(MissKey),
}

/// The key of a missed lookup (it owns the text, which the rewrite reads).
pub struct MissKey(Key);

impl MissKey {
    /// The statement text looked up.
    pub fn sql(&self) -> &str {
        &self.0.2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(slug: &str) -> SqlScope {
        let manifest = souk_module_registry::Manifest::parse(&format!(
            "slug: {slug}\nname: T\nversion: 1.0.0\ncategory: community\napi: 0.2.0\n"
        ));
        SqlScope::new(&manifest.expect("manifest"), [])
    }

    fn rewrite(cache: &RewriteCache, scope: &SqlScope, sql: &str) -> (bool, Answer) {
        match cache.get(scope, StatementSource::Runtime, sql.to_owned()) {
            Lookup::Hit(answer) => (true, answer),
            Lookup::Miss(key) => {
                let answer = scope
                    .rewrite(key.sql(), StatementSource::Runtime)
                    .map(Arc::from);
                cache.put(key, answer.clone());
                (false, answer)
            }
        }
    }

    #[test]
    fn a_hit_answers_what_the_rewriter_answered() {
        let cache = RewriteCache::new(1 << 20);
        let notes = scope("notes");
        let (hit, first) = rewrite(&cache, &notes, "SELECT * FROM items");
        assert!(!hit);
        let (hit, again) = rewrite(&cache, &notes, "SELECT * FROM items");
        assert!(hit);
        assert_eq!(first, again);
        assert!(first.unwrap()[0].sql.contains("notes__items"));
        let (hit, refused) = rewrite(&cache, &notes, "DROP TABLE items");
        assert!(!hit);
        let (hit, refused_again) = rewrite(&cache, &notes, "DROP TABLE items");
        assert!(hit, "refusals are cached too");
        assert_eq!(refused, refused_again);
        assert!(refused.is_err());
    }

    #[test]
    fn scopes_with_other_keys_never_share_an_answer() {
        let cache = RewriteCache::new(1 << 20);
        let (_, notes) = rewrite(&cache, &scope("notes"), "SELECT * FROM items");
        let (hit, other) = rewrite(&cache, &scope("other"), "SELECT * FROM items");
        assert!(!hit);
        assert!(notes.unwrap()[0].sql.contains("notes__items"));
        assert!(other.unwrap()[0].sql.contains("other__items"));
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = RewriteCache::new(4096);
        let notes = scope("notes");
        for i in 0..1000 {
            let _ = rewrite(&cache, &notes, &format!("SELECT {i} FROM items"));
        }
        let halves = cache.halves.lock().unwrap();
        let held: usize = halves
            .young
            .iter()
            .chain(halves.old.iter())
            .map(|(k, a)| weight(k, a))
            .sum();
        assert!(held <= 2 * 4096, "held {held} bytes");
        assert!(halves.young.len() + halves.old.len() < 1000);
    }
}
