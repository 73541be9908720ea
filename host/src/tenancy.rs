//! Tenants and their databases.
//!
//! A tenant is an organisation using the host. Each tenant gets its own
//! SQLite database file for module data, opened lazily and kept in a pool;
//! no statement of one tenant can reach another tenant's file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;
use souk_module_registry::Slug;
use sqlx::SqlitePool;

use crate::control_plane::{ControlPlane, now, sqlite_options};
use crate::db::sandbox;
use crate::error::SoukError;

/// A tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    /// Internal id; names the tenant's database file.
    pub id: String,
    /// Public identifier used in URLs.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// Tenants and their database pools.
pub struct Tenancy {
    control: ControlPlane,
    dir: PathBuf,
    pools: Mutex<HashMap<String, SqlitePool>>,
}

impl Tenancy {
    /// Tenants recorded in `control`, with databases under `dir`.
    pub fn new(control: ControlPlane, dir: PathBuf) -> Self {
        Tenancy {
            control,
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
            created_at: now(),
        };
        let result =
            sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES (?, ?, ?, ?)")
                .bind(&tenant.id)
                .bind(&tenant.slug)
                .bind(&tenant.name)
                .bind(&tenant.created_at)
                .execute(self.control.pool())
                .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(SoukError::Conflict(format!(
                    "a tenant with slug {:?} already exists",
                    slug.as_str()
                )));
            }
            Err(e) => return Err(e.into()),
        }
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
        Ok(sqlx::query_as(
            "SELECT id, slug, name, created_at FROM tenants ORDER BY created_at, slug",
        )
        .fetch_all(self.control.pool())
        .await?)
    }

    /// The tenant with `slug`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when there is none.
    pub async fn by_slug(&self, slug: &str) -> Result<Tenant, SoukError> {
        sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE slug = ?")
            .bind(slug)
            .fetch_optional(self.control.pool())
            .await?
            .ok_or_else(|| tenant_not_found(slug))
    }

    /// The tenant with internal id `id`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when there is none.
    pub async fn by_id(&self, id: &str) -> Result<Tenant, SoukError> {
        sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(self.control.pool())
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
        // The host's own tables (usage) live beside the module data they
        // count, at the schema version this host knows.
        crate::tenant_migrations::migrate(&pool)
            .await
            .map_err(|e| SoukError::Internal(e.into()))?;
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
