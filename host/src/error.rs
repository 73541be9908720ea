//! The errors the host's services answer with, at the bottom of the house:
//! every layer may import this module, and it imports no service.
//!
//! # Policy
//!
//! - **Pure domain code keeps its own errors.** A parser, a state machine or
//!   a calculation returns its own `thiserror` enum that says exactly what
//!   went wrong in its terms (a plan catalog's [`PlanCatalogError`], a
//!   subscription's transition error, a refused SQL statement).
//! - **Stores return store errors.** A repository over the control plane
//!   or a tenant database answers `sqlx` failures and its own typed
//!   outcomes (an optimistic-lock conflict is a variant, never a string a
//!   caller has to match).
//! - **Services return [`SoukError`].** A service (installer, billing,
//!   catalog, dispatch, ...) turns the domain and store errors it meets into
//!   one of the kinds below, with a message written for the person who asked:
//!   no server paths, no other tenant's existence, no `Debug` output.
//! - **Only `api/` knows HTTP.** The API maps each kind to a status and a
//!   problem document; the CLI prints the message. Turning an error into a
//!   response does not log: the API's tracing layer does, once per request.
//!
//! [`PlanCatalogError`]: crate::billing::plans::PlanCatalogError

use std::time::Duration;

/// An error a user of the host can meet, with a stable kind for the API's
/// problem documents.
#[derive(Debug, thiserror::Error)]
pub enum SoukError {
    /// The thing asked for does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The input is malformed or breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// A package was refused.
    #[error("{0}")]
    PackageRefused(String),
    /// A dependency is missing or incompatible.
    #[error("{0}")]
    Dependency(String),
    /// A module's migration or lifecycle hook failed; nothing was changed.
    #[error("{0}")]
    LifecycleFailed(String),
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The module failed while serving a request (trap, timeout, oversized
    /// response); the host and other tenants are unaffected.
    #[error("{0}")]
    Module(#[from] CallError),
    /// The module version was revoked by its publisher and will not run.
    #[error("{0}")]
    Revoked(String),
    /// The module has no route for this method (but has one for the path).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The tenant's plan does not allow this (route gate or entitlement
    /// check); carries the feature, the reason and the upgrade option.
    #[error("{0}")]
    Denied(Box<souk_denial::Denial>),
    /// The action needs a payment first (a paid plan, an upgrade).
    #[error("{0}")]
    PaymentRequired(String),
    /// A payment provider did not answer (in time, or sensibly); nothing
    /// was granted and nothing lost: retry.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// Too many attempts (sign-ins, anonymous calls of public routes) from
    /// this client or for this account; retry after `retry_after`.
    #[error("{detail}")]
    TooManyRequests {
        /// What was refused and when to retry.
        detail: String,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// An unexpected failure inside the host.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SoukError {
    fn from(e: sqlx::Error) -> Self {
        SoukError::Internal(e.into())
    }
}

/// Why a call into a module failed. The host maps these to clean error
/// responses; none of them affects other calls.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline.
    #[error("the module ran longer than its {0:?} budget and was stopped")]
    Timeout(Duration),
    /// A background call held its tenant's write lock (from its first
    /// write) longer than its write budget and was stopped.
    #[error(
        "the module kept its tenant's database locked for writing longer than its {0:?} \
         write budget and was stopped; write at the end of a job, or split it into several jobs"
    )]
    WriteBudget(Duration),
    /// The module trapped (panic, stack overflow, out of memory, ...).
    #[error("the module failed: {0}")]
    Trap(String),
    /// The module returned a response larger than allowed.
    #[error("the module's response of {size} bytes exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// Bytes of the response body returned.
        size: usize,
        /// [`RuntimeLimits::max_response_bytes`](crate::runtime::RuntimeLimits::max_response_bytes).
        limit: usize,
    },
    /// The module's answer may not leave the host (a status outside
    /// 200-599, too many headers, a control character in a header value;
    /// see `runtime::answer`).
    #[error("module {module}'s answer was refused: {reason}")]
    BadAnswer {
        /// The module's slug.
        module: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// No instance slot (or no place for a request call) was free.
    #[error("the host is at capacity; try again in {}s", retry_secs(*retry_after))]
    Capacity {
        /// When a retry may find a free slot (running calls end by then).
        retry_after: Duration,
    },
    /// The tenant already has as many module calls running as it may; the
    /// module did not run.
    #[error(
        "this tenant already has {limit} module calls running, the most it may have at once; \
         try again in {}s",
        retry_secs(*retry_after)
    )]
    TenantBusy {
        /// The per-tenant cap.
        limit: u32,
        /// When a retry may find a free place.
        retry_after: Duration,
    },
}

impl CallError {
    /// For a refusal that a later retry may not meet, when to retry, in
    /// whole seconds (at least 1), as a `Retry-After` header says it.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CallError::Capacity { retry_after } | CallError::TenantBusy { retry_after, .. } => {
                Some(retry_secs(*retry_after))
            }
            _ => None,
        }
    }
}

fn retry_secs(after: Duration) -> u64 {
    after
        .as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
        .max(1)
}
