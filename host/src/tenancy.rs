//! Tenants and their databases.
//!
//! A tenant is an organisation using the host. Each tenant gets its own
//! SQLite database file for module data, opened lazily and kept in a pool;
//! no statement of one tenant can reach another tenant's file.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use souk_module_registry::Slug;
use sqlx::SqlitePool;

use crate::capabilities::db::{SqlScope, sandbox};
use crate::clock::{Clock, rfc3339};
use crate::control_plane::tenants;
use crate::control_plane::{ControlPlane, GenerationCache, StoreError, sqlite_options};
use crate::error::SoukError;

pub use crate::control_plane::tenants::Tenant;

/// Tenants and their database pools.
pub struct Tenancy {
    control: ControlPlane,
    /// Stamps a tenant's creation.
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    /// Open tenant databases, at most `open_limit`, each with the tick of
    /// its last use.
    pools: Mutex<OpenPools>,
    /// One turn per tenant while its database is opened, so that two tasks
    /// never open the same database at once (a tenant's creation and the
    /// maintenance step's first visit, say): the second waits for the
    /// first and then finds its pool, instead of setting up a second pool's
    /// connections (WAL mode, the host's migrations) on the same file at
    /// the same time. Other tenants' opens do not wait for it.
    opening: Openers,
    /// The SQL scope of each installed version per tenant, by (tenant id,
    /// module slug, version), while the control plane is unchanged (built
    /// by the installer, `Installer::scope_for`).
    scopes: GenerationCache<(String, String, String), Arc<SqlScope>>,
}

impl Tenancy {
    /// Tenants recorded in `control`, with databases under `dir`, created
    /// at the instants `clock` tells.
    /// Keeps at most `open_limit` tenant databases open (see
    /// [`DEFAULT_OPEN_TENANTS`]).
    pub fn new(
        control: ControlPlane,
        dir: PathBuf,
        clock: Arc<dyn Clock>,
        open_limit: usize,
    ) -> Self {
        Tenancy {
            control,
            clock,
            dir,
            pools: Mutex::new(OpenPools {
                pools: HashMap::new(),
                tick: 0,
                limit: open_limit.max(1),
                migrated: HashSet::new(),
            }),
            opening: Openers::default(),
            scopes: GenerationCache::new(crate::control_plane::cache::DEFAULT_CAPACITY),
        }
    }

    /// The tenants' module scopes kept in memory (see the field).
    pub fn scopes(&self) -> &GenerationCache<(String, String, String), Arc<SqlScope>> {
        &self.scopes
    }

    /// Creates a tenant and its database.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a bad slug or name, [`SoukError::Conflict`]
    /// when the slug is taken.
    pub async fn create(&self, slug: &str, name: &str) -> Result<Tenant, SoukError> {
        let slug = Slug::parse(slug)
            .map_err(|e| SoukError::Invalid(format!("tenant slug {slug:?} {e}")))?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(SoukError::Invalid(
                "tenant name must be 1 to 200 characters".into(),
            ));
        }
        let tenant = Tenant {
            id: format!("t_{}", hex::encode(rand::random::<[u8; 8]>())),
            slug: slug.to_string(),
            name: name.to_owned(),
            created_at: rfc3339(self.clock.now()),
        };
        let mut conn = self.control.pool().acquire().await?;
        tenants::insert(&mut conn, &tenant)
            .await
            .map_err(|e| match e {
                StoreError::Db(e) => e.into(),
                StoreError::Duplicate | StoreError::Changed => SoukError::Conflict(format!(
                    "a tenant with slug {:?} already exists",
                    slug.as_str()
                )),
            })?;
        drop(conn);
        // Create the database file now so a broken data directory shows up
        // at creation, not at the first install.
        self.database(&tenant).await?;
        Ok(tenant)
    }

    /// All tenants, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(&self) -> Result<Vec<Tenant>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(tenants::list(&mut conn).await?)
    }

    /// The tenant with `slug`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when there is none.
    pub async fn by_slug(&self, slug: &str) -> Result<Tenant, SoukError> {
        self.control
            .tenant_by_slug(slug)
            .await?
            .ok_or_else(|| tenant_not_found(slug))
    }

    /// The tenant with internal id `id`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when there is none.
    pub async fn by_id(&self, id: &str) -> Result<Tenant, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        tenants::by_id(&mut conn, id)
            .await?
            .ok_or_else(|| SoukError::NotFound(format!("no tenant with id {id:?}")))
    }

    /// The tenant's database pool (opened on first use).
    ///
    /// # Errors
    /// When the database file cannot be opened.
    pub async fn database(&self, tenant: &Tenant) -> Result<SqlitePool, SoukError> {
        if let Some(pool) = self.pools.lock().map_err(|_| poisoned())?.get(&tenant.id) {
            return Ok(pool);
        }
        let _opening = self.opening.turn(&tenant.id).await;
        // Another task may have opened it while this one waited.
        if let Some(pool) = self.pools.lock().map_err(|_| poisoned())?.get(&tenant.id) {
            return Ok(pool);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| SoukError::Internal(e.into()))?;
        let path = self.dir.join(format!("{}.sqlite", tenant.id));
        let pool = sandbox::pool_options()
            .max_connections(4)
            // A connection in the pool is known good (a poisoned one is
            // closed on release); pinging it on every acquire would cost a
            // round trip to its worker thread per request.
            .test_before_acquire(false)
            .connect_with(sqlite_options(&path))
            .await?;
        // The host's own tables (usage) live beside the module data they
        // count, at the schema version this host knows: brought there the
        // first time this process opens the database (a database closed
        // past the open limit and opened again is already there).
        if !self
            .pools
            .lock()
            .map_err(|_| poisoned())?
            .migrated(&tenant.id)
        {
            crate::tenant_migrations::migrate(&pool)
                .await
                .map_err(|e| SoukError::Internal(e.into()))?;
        }
        let mut pools = self.pools.lock().map_err(|_| poisoned())?;
        Ok(pools.insert(&tenant.id, pool))
    }
}

/// The opening turns of tenant databases: a lock per tenant whose database
/// is being opened, made by its first opener and dropped with its last
/// turn, so the map holds only tenants being opened right now.
#[derive(Default)]
struct Openers {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Openers {
    /// Waits for `tenant_id`'s turn to open its database: at once unless
    /// another task is opening the same tenant's.
    async fn turn(&self, tenant_id: &str) -> OpeningTurn<'_> {
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant_id.to_owned())
            .or_default()
            .clone();
        let held = gate.clone().lock_owned().await;
        OpeningTurn {
            openers: self,
            tenant_id: tenant_id.to_owned(),
            gate,
            held: Some(held),
        }
    }
}

/// A tenant's turn to open its database; dropping it lets the next opener
/// of the tenant in, and forgets the tenant's lock when none waits.
struct OpeningTurn<'a> {
    openers: &'a Openers,
    tenant_id: String,
    gate: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for OpeningTurn<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut gates = self
            .openers
            .gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this turn's: nobody else waits (clones
        // are made under the map's lock, so none can appear meanwhile).
        if Arc::strong_count(&self.gate) == 2
            && gates
                .get(&self.tenant_id)
                .is_some_and(|gate| Arc::ptr_eq(gate, &self.gate))
        {
            gates.remove(&self.tenant_id);
        }
    }
}

/// How many tenant databases a host keeps open by default: each open one
/// holds up to four connections of two or three file descriptors each, so
/// this bounds the descriptors tenant data takes to a few thousand however
/// many tenants the host serves.
pub const DEFAULT_OPEN_TENANTS: usize = 512;

/// The open tenant databases, closed least recently used first past the
/// limit.
struct OpenPools {
    pools: HashMap<String, (SqlitePool, u64)>,
    tick: u64,
    limit: usize,
    /// Tenants whose database this process has migrated.
    migrated: HashSet<String>,
}

impl OpenPools {
    fn migrated(&self, tenant_id: &str) -> bool {
        self.migrated.contains(tenant_id)
    }

    fn get(&mut self, tenant_id: &str) -> Option<SqlitePool> {
        self.tick += 1;
        let tick = self.tick;
        self.pools.get_mut(tenant_id).map(|(pool, used)| {
            *used = tick;
            pool.clone()
        })
    }

    /// Keeps `pool` for `tenant_id` unless another task opened one first,
    /// and answers the one kept; past the limit, the least recently used
    /// database is let go. A request still using it keeps its connection
    /// (the pool closes when its last user drops it); the next request of
    /// that tenant opens the database again.
    fn insert(&mut self, tenant_id: &str, pool: SqlitePool) -> SqlitePool {
        if let Some(kept) = self.get(tenant_id) {
            return kept;
        }
        if self.pools.len() >= self.limit
            && let Some(oldest) = self
                .pools
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone())
            && let Some((evicted, _)) = self.pools.remove(&oldest)
        {
            // Closing waits for connections in use to come back; the host
            // does not wait for that here.
            tokio::spawn(async move { evicted.close().await });
        }
        self.pools
            .insert(tenant_id.to_owned(), (pool.clone(), self.tick));
        self.migrated.insert(tenant_id.to_owned());
        pool
    }
}

fn poisoned() -> SoukError {
    SoukError::Internal(anyhow::anyhow!("tenant pool map poisoned"))
}

/// The error for a tenant that does not exist or is not visible to the
/// caller: the same words either way, so a tenant token cannot learn which
/// other tenants exist.
pub fn tenant_not_found(slug: &str) -> SoukError {
    SoukError::NotFound(format!("no tenant {slug:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy_pool() -> SqlitePool {
        SqlitePool::connect_lazy("sqlite::memory:").expect("lazy pool")
    }

    #[tokio::test]
    async fn the_least_recently_used_database_is_let_go_past_the_limit() {
        let mut open = OpenPools {
            pools: HashMap::new(),
            tick: 0,
            limit: 2,
            migrated: HashSet::new(),
        };
        open.insert("a", lazy_pool());
        open.insert("b", lazy_pool());
        assert!(
            open.get("a").is_some(),
            "a is used again: b is now the oldest"
        );
        open.insert("c", lazy_pool());
        assert_eq!(open.pools.len(), 2);
        assert!(open.get("b").is_none(), "b was let go");
        assert!(open.get("a").is_some() && open.get("c").is_some());
        assert!(open.migrated("b"), "a database let go stays migrated");
    }

    #[tokio::test]
    async fn tenants_take_opening_turns_of_their_own_and_forget_them_after() {
        let openers = Arc::new(Openers::default());
        let wait = std::time::Duration::from_millis(200);
        let a = openers.turn("t_a").await;
        // Another tenant's open does not wait for t_a's ...
        let b = tokio::time::timeout(wait, openers.turn("t_b"))
            .await
            .expect("t_b opens while t_a does");
        // ... but a second open of t_a does.
        assert!(
            tokio::time::timeout(wait, openers.turn("t_a"))
                .await
                .is_err(),
            "two opens of t_a at once"
        );
        drop(b);
        let waiting = tokio::spawn({
            let openers = openers.clone();
            async move {
                let _turn = openers.turn("t_a").await;
            }
        });
        tokio::time::sleep(wait).await;
        assert!(!waiting.is_finished(), "t_a's next opener waits");
        drop(a);
        waiting.await.expect("t_a's next opener gets its turn");
        assert!(
            openers.gates.lock().unwrap().is_empty(),
            "no lock is kept once every open is done"
        );
    }

    #[tokio::test]
    async fn two_tenants_open_at_once_and_one_tenant_opens_one_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = ControlPlane::open(&dir.path().join("control.sqlite"))
            .await
            .expect("control plane");
        let tenancy = Arc::new(Tenancy::new(
            control,
            dir.path().join("tenants"),
            Arc::new(crate::clock::SystemClock),
            16,
        ));
        let tenant = |id: &str| Tenant {
            id: id.into(),
            slug: id.replace('_', "-"),
            name: id.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        // While t_slow's open is under way (its turn held), t_fast opens.
        let slow_turn = tenancy.opening.turn("t_slow").await;
        let fast = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tenancy.database(&tenant("t_fast")),
        )
        .await
        .expect("t_fast does not wait for t_slow's open")
        .expect("t_fast opens");
        let slow = tokio::spawn({
            let tenancy = tenancy.clone();
            let slow = tenant("t_slow");
            async move { tenancy.database(&slow).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!slow.is_finished(), "t_slow's second open waits its turn");
        drop(slow_turn);
        slow.await.expect("task").expect("t_slow opens");
        // Many concurrent opens of one tenant end with one pool.
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let tenancy = tenancy.clone();
                let same = tenant("t_same");
                tokio::spawn(async move { tenancy.database(&same).await })
            })
            .collect();
        let mut pools = Vec::new();
        for open in opens {
            pools.push(open.await.expect("task").expect("opens"));
        }
        pools[0].close().await;
        assert!(
            pools.iter().all(SqlitePool::is_closed),
            "every opener got the same pool"
        );
        assert!(!fast.is_closed());
        assert!(tenancy.opening.gates.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_second_opener_gets_the_pool_kept_first() {
        let mut open = OpenPools {
            pools: HashMap::new(),
            tick: 0,
            limit: 4,
            migrated: HashSet::new(),
        };
        let first = open.insert("a", lazy_pool());
        let second = open.insert("a", lazy_pool());
        assert_eq!(open.pools.len(), 1);
        // The same pool: closing one closes the other.
        first.close().await;
        assert!(second.is_closed());
    }
}
