//! Who a message may go to: the tenant's users, as the `notify` capability
//! and the host's notices need them — a user by id, the active user linked
//! to a member number, the tenant's admins.
//!
//! The users live in the control plane (the people work); this trait is the
//! little the mail needs of them, so the capability does not depend on how
//! users are stored, and tests can give a directory of their own.

use futures_util::future::BoxFuture;

/// Which user a module addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientRef<'a> {
    /// A user of the tenant, by id.
    User(&'a str),
    /// The active user linked to a Membership member number.
    Member(&'a str),
}

impl RecipientRef<'_> {
    /// How a message names the recipient in an error: `user u_1`,
    /// `member 0042`.
    pub fn describe(&self) -> String {
        match self {
            RecipientRef::User(id) => format!("user {id}"),
            RecipientRef::Member(number) => format!("member {number}"),
        }
    }
}

/// A user mail can be sent to, as the directory knows them (not yet
/// checked: the capability parses the address and name at its boundary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The user's id.
    pub user_id: String,
    /// The user's email address.
    pub address: String,
    /// The user's display name.
    pub name: String,
}

/// The directory could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the user directory is unavailable: {0:#}")]
pub struct DirectoryError(pub anyhow::Error);

/// The tenant's users, as mail needs them. Implemented over the control
/// plane's users table by the composition root; every method answers only
/// for `tenant_id` (a user of another tenant is unknown).
pub trait RecipientDirectory: Send + Sync {
    /// The user `recipient` names in `tenant_id`: by id (an active user),
    /// or the active user linked to the member number. `None` when there
    /// is no such active user.
    ///
    /// # Errors
    /// [`DirectoryError`] when the directory cannot be read.
    fn resolve<'a>(
        &'a self,
        tenant_id: &'a str,
        recipient: RecipientRef<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryEntry>, DirectoryError>>;

    /// The tenant's active admins (the host's notices go to them).
    ///
    /// # Errors
    /// [`DirectoryError`] when the directory cannot be read.
    fn admins<'a>(
        &'a self,
        tenant_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DirectoryEntry>, DirectoryError>>;
}
