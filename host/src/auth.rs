//! Who may do what.
//!
//! Nothing is open by default. The operator token (created on the first
//! `souk serve`, written with 0600 permissions) reaches everything. Tenant
//! tokens (created by the operator, stored only as sha256 hashes,
//! revocable) reach only their own tenant. A principal never carries the
//! token itself, so what reaches a module is an identity, not a secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capabilities::context::Caller;
use crate::clock::{Clock, rfc3339};
use crate::control_plane::ControlPlane;
use crate::control_plane::tokens;
use crate::error::SoukError;
use crate::secrets::{random_secret, token_hash, write_private_file};
use crate::tenancy::{Tenant, tenant_not_found};

pub use crate::control_plane::tokens::TokenInfo;

const OPERATOR_PREFIX: &str = "souk_op_";
const TENANT_PREFIX: &str = "souk_tk_";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator.
    Operator,
    /// A tenant token.
    Tenant {
        /// The tenant it belongs to.
        tenant_id: String,
        /// The token's id.
        token_id: String,
        /// The token's name.
        token_name: String,
    },
}

impl Principal {
    /// The identity passed to modules.
    pub fn caller(&self) -> Caller {
        match self {
            Principal::Operator => Caller::operator(),
            Principal::Tenant {
                token_id,
                token_name,
                ..
            } => Caller::tenant_token(token_id, token_name),
        }
    }

    /// Checks that this principal may act for `tenant`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`], worded as for a tenant that does not exist.
    pub fn check_tenant(&self, tenant: &Tenant) -> Result<(), SoukError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { tenant_id, .. } if *tenant_id == tenant.id => Ok(()),
            Principal::Tenant { .. } => Err(tenant_not_found(&tenant.slug)),
        }
    }

    /// Checks that this principal is the operator.
    ///
    /// # Errors
    /// [`SoukError::Forbidden`] for tenant tokens.
    pub fn require_operator(&self) -> Result<(), SoukError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { .. } => Err(SoukError::Forbidden(
                "this needs the operator token; tenant tokens reach only their tenant's modules"
                    .into(),
            )),
        }
    }
}

/// Token storage and checks.
pub struct Auth {
    control: ControlPlane,
    /// Stamps token creation and revocation.
    clock: Arc<dyn Clock>,
    operator_token_path: PathBuf,
}

impl Auth {
    /// Tokens recorded in `control` and stamped by `clock`; the operator
    /// token lives in `data_dir/operator-token`.
    pub fn new(control: ControlPlane, data_dir: &Path, clock: Arc<dyn Clock>) -> Self {
        Auth {
            control,
            clock,
            operator_token_path: data_dir.join("operator-token"),
        }
    }

    /// Where the operator token is kept.
    pub fn operator_token_path(&self) -> &Path {
        &self.operator_token_path
    }

    /// Creates the operator token if there is none. Returns `true` when it
    /// was created now.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn ensure_operator_token(&self) -> Result<bool, SoukError> {
        if self.operator_token_path.exists() {
            return Ok(false);
        }
        let token = format!("{OPERATOR_PREFIX}{}", random_secret());
        write_private_file(&self.operator_token_path, format!("{token}\n").as_bytes())
            .map_err(|e| SoukError::Internal(e.into()))?;
        Ok(true)
    }

    fn operator_token_hash(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.operator_token_path).ok()?;
        Some(token_hash(text.trim()))
    }

    /// Authenticates a bearer token.
    ///
    /// # Errors
    /// [`SoukError::Unauthorized`] for a missing, unknown or revoked token —
    /// the same message for each, so a caller learns nothing about tokens.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, SoukError> {
        let refused = || {
            SoukError::Unauthorized(
                "a valid token is required: send `Authorization: Bearer <token>`".into(),
            )
        };
        let token = bearer
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(refused)?;
        let hash = token_hash(token);
        if token.starts_with(OPERATOR_PREFIX) {
            let expected = self.operator_token_hash().ok_or_else(refused)?;
            // Both sides are hashes of secrets; comparing them leaks nothing
            // useful, but compare without early exit anyway.
            let same = expected.len() == hash.len()
                && expected
                    .bytes()
                    .zip(hash.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            return if same {
                Ok(Principal::Operator)
            } else {
                Err(refused())
            };
        }
        if !token.starts_with(TENANT_PREFIX) {
            return Err(refused());
        }
        let token = self
            .control
            .active_token(&hash)
            .await?
            .ok_or_else(refused)?;
        Ok(Principal::Tenant {
            tenant_id: token.tenant_id,
            token_id: token.id,
            token_name: token.name,
        })
    }

    /// Creates a tenant token. The secret is returned once and never stored.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a bad name.
    pub async fn create_token(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<(TokenInfo, String), SoukError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(SoukError::Invalid(
                "token name must be 1 to 100 characters".into(),
            ));
        }
        let secret = format!("{TENANT_PREFIX}{}", random_secret());
        let info = TokenInfo {
            id: format!("tok_{}", hex::encode(rand::random::<[u8; 8]>())),
            name: name.to_owned(),
            created_at: rfc3339(self.clock.now()),
            revoked_at: None,
        };
        let mut conn = self.control.pool().acquire().await?;
        tokens::insert(&mut conn, &tenant.id, &info, &token_hash(&secret)).await?;
        Ok((info, secret))
    }

    /// A tenant's tokens.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_tokens(&self, tenant: &Tenant) -> Result<Vec<TokenInfo>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(tokens::list(&mut conn, &tenant.id).await?)
    }

    /// Revokes a token; it stops working at once.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant has no such token.
    pub async fn revoke_token(
        &self,
        tenant: &Tenant,
        token_id: &str,
    ) -> Result<TokenInfo, SoukError> {
        let at = rfc3339(self.clock.now());
        let mut conn = self.control.pool().acquire().await?;
        tokens::revoke(&mut conn, &tenant.id, token_id, &at)
            .await?
            .ok_or_else(|| {
                SoukError::NotFound(format!("tenant {} has no token {token_id:?}", tenant.slug))
            })
    }
}
