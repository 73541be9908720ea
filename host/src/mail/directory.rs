//! The [`RecipientDirectory`] over the control plane's tenant users (the
//! people work's `users` table): a user by id, the active user linked to a
//! member number, the tenant's active admins. Every query is bound to the
//! tenant, so a user of another tenant is unknown.

use futures_util::future::BoxFuture;

use crate::capabilities::notify::{
    DirectoryEntry, DirectoryError, RecipientDirectory, RecipientRef,
};
use crate::control_plane::ControlPlane;

/// The tenant users of the control plane, as mail needs them.
pub struct UsersDirectory {
    control: ControlPlane,
}

impl UsersDirectory {
    /// The directory over `control`'s users.
    pub fn new(control: ControlPlane) -> Self {
        UsersDirectory { control }
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    display_name: String,
}

impl From<UserRow> for DirectoryEntry {
    fn from(row: UserRow) -> Self {
        DirectoryEntry {
            user_id: row.id,
            address: row.email,
            name: row.display_name,
        }
    }
}

fn unavailable(error: sqlx::Error) -> DirectoryError {
    DirectoryError(error.into())
}

impl RecipientDirectory for UsersDirectory {
    fn resolve<'a>(
        &'a self,
        tenant_id: &'a str,
        recipient: RecipientRef<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryEntry>, DirectoryError>> {
        Box::pin(async move {
            let mut conn = self.control.pool().acquire().await.map_err(unavailable)?;
            let (sql, key) = match recipient {
                RecipientRef::User(id) => (
                    "SELECT id, email, display_name FROM users \
                     WHERE tenant_id = ? AND id = ? AND status = 'active'",
                    id,
                ),
                // The oldest active user linked to the number, should two be.
                RecipientRef::Member(number) => (
                    "SELECT id, email, display_name FROM users \
                     WHERE tenant_id = ? AND member_number = ? AND status = 'active' \
                     ORDER BY created_at, id LIMIT 1",
                    number,
                ),
            };
            let row: Option<UserRow> = sqlx::query_as(sql)
                .bind(tenant_id)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(unavailable)?;
            Ok(row.map(DirectoryEntry::from))
        })
    }

    fn admins<'a>(
        &'a self,
        tenant_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DirectoryEntry>, DirectoryError>> {
        Box::pin(async move {
            let mut conn = self.control.pool().acquire().await.map_err(unavailable)?;
            let rows: Vec<UserRow> = sqlx::query_as(
                "SELECT id, email, display_name FROM users \
                 WHERE tenant_id = ? AND role = 'admin' AND status = 'active' ORDER BY id",
            )
            .bind(tenant_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?;
            Ok(rows.into_iter().map(DirectoryEntry::from).collect())
        })
    }
}
