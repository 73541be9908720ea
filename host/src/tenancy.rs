//! Tenants and their databases.
//!
//! A tenant is an organisation using the host. Each tenant gets its own
//! SQLite database file for module data, opened lazily and kept in a pool;
//! no statement of one tenant can reach another tenant's file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use souk_module_registry::Slug;
use sqlx::SqlitePool;

use crate::capabilities::db::sandbox;
use crate::clock::{Clock, rfc3339};
use crate::control_plane::tenants;
use crate::control_plane::{ControlPlane, StoreError, sqlite_options};
use crate::error::SoukError;

pub use crate::control_plane::tenants::Tenant;

/// Tenants and their database pools.
pub struct Tenancy {
    control: ControlPlane,
    /// Stamps a tenant's creation.
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    pools: Mutex<HashMap<String, SqlitePool>>,
}

impl Tenancy {
    /// Tenants recorded in `control`, with databases under `dir`, created
    /// at the instants `clock` tells.
    pub fn new(control: ControlPlane, dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Tenancy {
            control,
            clock,
            dir,
            pools: Mutex::new(HashMap::new()),
        }
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
        let mut conn = self.control.pool().acquire().await?;
        tenants::by_slug(&mut conn, slug)
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
            return Ok(pool.clone());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| SoukError::Internal(e.into()))?;
        let path = self.dir.join(format!("{}.sqlite", tenant.id));
        let pool = sandbox::pool_options()
            .max_connections(4)
            .connect_with(sqlite_options(&path))
            .await?;
        // The host's own usage tables live beside the module data they count.
        crate::entitlements::usage_db::ensure_schema(&pool).await?;
        let mut pools = self.pools.lock().map_err(|_| poisoned())?;
        Ok(pools.entry(tenant.id.clone()).or_insert(pool).clone())
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
