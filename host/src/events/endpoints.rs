//! Webhook endpoints as a tenant manages them, and the delivery logs it
//! reads: `/v1/tenants/{t}/modules/{m}/webhooks` and
//! `/v1/tenants/{t}/modules/{m}/event-deliveries` (docs/webhooks.md).
//!
//! Every function takes the tenant the caller was checked against; an
//! endpoint or delivery of another tenant, or of another module, is not
//! found. Creating an endpoint needs the feature the module declares for
//! webhooks in the tenant's plan (the host's 402 otherwise).

use serde::{Deserialize, Serialize};
use souk_module_registry::Manifest;
use time::OffsetDateTime;

use super::Events;
use super::sender::check_url;
use crate::clock::rfc3339;
use crate::control_plane::webhooks::{self, Endpoint};
use crate::entitlements::Decision;
use crate::error::SoukError;
use crate::event_store::{self, ModuleDelivery, WebhookDelivery};
use crate::tenancy::Tenant;
use crate::work::WorkMarks;

/// Most endpoints one module of a tenant may have.
pub const MAX_ENDPOINTS_PER_MODULE: i64 = 16;
/// Longest description of an endpoint, in bytes.
const MAX_DESCRIPTION: usize = 500;
/// Most deliveries one page lists.
const MAX_PAGE: u32 = 100;

/// A new endpoint, as a tenant asks for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// Where to POST (https; http only when the operator allows it).
    pub url: String,
    /// The event types to receive, a subset of what the module emits;
    /// absent or null: all of them.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// A note.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether deliveries are made (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change to an endpoint; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    /// A new URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New event types (`[]` is refused; to receive all, send
    /// `"all_event_types": true`).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Receive every type the module emits (clears `event_types`).
    #[serde(default)]
    pub all_event_types: Option<bool>,
    /// A new note.
    #[serde(default)]
    pub description: Option<String>,
    /// Turn deliveries on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// An endpoint as the API shows it: never its secret.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    /// `whk_` and 16 hex digits.
    pub id: String,
    /// The module whose events it receives.
    pub module: String,
    /// Where deliveries go.
    pub url: String,
    /// The types it receives; null: all the module emits.
    pub event_types: Option<Vec<String>>,
    /// A note.
    pub description: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_until: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        EndpointView {
            id: e.id.clone(),
            module: e.module_slug.clone(),
            url: e.url.clone(),
            event_types: e.types(),
            description: e.description.clone(),
            enabled: e.enabled,
            previous_secret_until: e.previous_secret_until.clone(),
            created_at: e.created_at.clone(),
            updated_at: e.updated_at.clone(),
        }
    }
}

/// An endpoint with its secret: the answer of create and rotate, the only
/// times the secret is shown.
#[derive(Debug, Serialize)]
pub struct WithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// The signing secret (`whsec_...`); keep it, it is not shown again.
    pub secret: String,
}

/// One webhook delivery as the log shows it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`Souk-Webhook-Id`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<String>,
    /// The receiver's status at the last attempt, if it answered.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed (or why deliveries are paused).
    pub last_error: Option<String>,
    /// The first bytes of the receiver's last answer, made printable.
    pub response_excerpt: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When it was delivered.
    pub delivered_at: Option<String>,
}

fn shown(ms: i64) -> String {
    rfc3339(event_store::instant(ms))
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        DeliveryView {
            id: d.id,
            event_id: event_store::event_id(d.event_seq),
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(shown),
            last_attempt_at: d.last_attempt_at.map(shown),
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            response_excerpt: d.response_excerpt,
            created_at: shown(d.created_at),
            delivered_at: d.delivered_at.map(shown),
        }
    }
}

/// One page of a delivery log, newest first.
#[derive(Debug, Serialize)]
pub struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next page; null on the last.
    pub next_before: Option<i64>,
}

/// One delivery of a dependency's event to a subscriber module.
#[derive(Debug, Serialize)]
pub struct ModuleDeliveryView {
    /// The event's id.
    pub event_id: String,
    /// The module that emitted it.
    pub source_module: String,
    /// Its type.
    pub event_type: String,
    /// `pending`, `handled`, `failed` (retries exhausted; later events
    /// went on) or `skipped` (no longer subscribed or installed).
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When it was handled, given up or skipped.
    pub finished_at: Option<String>,
}

impl From<ModuleDelivery> for ModuleDeliveryView {
    fn from(d: ModuleDelivery) -> Self {
        ModuleDeliveryView {
            event_id: event_store::event_id(d.event_seq),
            source_module: d.module,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(shown),
            last_error: d.last_error,
            created_at: shown(d.created_at),
            finished_at: d.finished_at.map(shown),
        }
    }
}

/// One page of a subscriber's delivery log, newest event first.
#[derive(Debug, Serialize)]
pub struct ModuleDeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<ModuleDeliveryView>,
    /// Pass as `before` (an event id) for the next page; null on the last.
    pub next_before: Option<String>,
}

fn new_secret() -> String {
    format!("whsec_{}", crate::secrets::random_secret())
}

fn not_found(id: &str) -> SoukError {
    SoukError::NotFound(format!("no webhook endpoint {id:?} for this module"))
}

fn page_size(limit: Option<u32>) -> i64 {
    i64::from(limit.unwrap_or(50).clamp(1, MAX_PAGE))
}

impl Events<'_> {
    pub(super) fn now(&self) -> OffsetDateTime {
        self.billing.clock().now()
    }

    /// The installed module's manifest, with the engine's grant current.
    async fn installed(&self, tenant: &Tenant, module: &str) -> Result<Manifest, SoukError> {
        let installation = self.installer.require(tenant, module).await?;
        let resolved = self.usage.ensure_grant(tenant, &installation).await?;
        Ok((*resolved.manifest).clone())
    }

    /// Checks the event types asked for against what `manifest` emits.
    fn check_types(manifest: &Manifest, types: &[String]) -> Result<String, SoukError> {
        if types.is_empty() {
            return Err(SoukError::Invalid(
                "`event_types` is empty; leave it out to receive every type the module emits"
                    .to_owned(),
            ));
        }
        let mut sorted = Vec::new();
        for t in types {
            if !manifest.events.emits(t) {
                return Err(SoukError::Invalid(format!(
                    "module {} does not emit events of type {t:?} (it emits: {})",
                    manifest.slug,
                    manifest.events.emits.join(", ")
                )));
            }
            if !sorted.contains(t) {
                sorted.push(t.clone());
            }
        }
        sorted.sort();
        serde_json::to_string(&sorted).map_err(|e| SoukError::Internal(e.into()))
    }

    fn check_description(text: &str) -> Result<(), SoukError> {
        if text.len() > MAX_DESCRIPTION || text.chars().any(char::is_control) {
            return Err(SoukError::Invalid(format!(
                "`description` must be at most {MAX_DESCRIPTION} bytes without control characters"
            )));
        }
        Ok(())
    }

    /// Refuses when the tenant's plan lacks the module's webhook feature.
    fn check_plan(&self, tenant: &Tenant, manifest: &Manifest) -> Result<(), SoukError> {
        let Some(feature) = &manifest.events.webhook_feature else {
            return Ok(());
        };
        match self
            .billing
            .engine()
            .check_feature(&tenant.id, manifest.slug.as_str(), feature)
        {
            Decision::Allowed => Ok(()),
            Decision::Denied(denial) => Err(SoukError::Denied(Box::new(denial))),
        }
    }

    /// Registers an endpoint for `module`; answers it with its secret,
    /// shown this once.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed,
    /// [`SoukError::Denied`] when the plan lacks the webhook feature,
    /// [`SoukError::Invalid`] for a URL, type or description refused or
    /// too many endpoints.
    pub async fn create_endpoint(
        &self,
        tenant: &Tenant,
        module: &str,
        new: NewEndpoint,
    ) -> Result<WithSecret, SoukError> {
        let manifest = self.installed(tenant, module).await?;
        if manifest.events.emits.is_empty() {
            return Err(SoukError::Invalid(format!(
                "module {module} emits no events, so it has no webhooks"
            )));
        }
        self.check_plan(tenant, &manifest)?;
        check_url(&new.url, &self.config.network).map_err(SoukError::Invalid)?;
        let event_types = match &new.event_types {
            Some(types) => Some(Self::check_types(&manifest, types)?),
            None => None,
        };
        let description = new.description.unwrap_or_default();
        Self::check_description(&description)?;
        let mut conn = self.control.pool().acquire().await?;
        if webhooks::count(&mut conn, &tenant.id, module).await? >= MAX_ENDPOINTS_PER_MODULE {
            return Err(SoukError::Invalid(format!(
                "a module may have at most {MAX_ENDPOINTS_PER_MODULE} webhook endpoints"
            )));
        }
        let now = rfc3339(self.now());
        let endpoint = Endpoint {
            id: format!("whk_{}", hex::encode(rand::random::<[u8; 8]>())),
            tenant_id: tenant.id.clone(),
            module_slug: module.to_owned(),
            url: new.url,
            event_types,
            description,
            enabled: new.enabled.unwrap_or(true),
            secret: new_secret(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: now.clone(),
            updated_at: now,
        };
        webhooks::insert(&mut conn, &endpoint).await?;
        Ok(WithSecret {
            endpoint: EndpointView::from(&endpoint),
            secret: endpoint.secret,
        })
    }

    /// The endpoints of `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed; database
    /// errors.
    pub async fn list_endpoints(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Vec<EndpointView>, SoukError> {
        self.installer.require(tenant, module).await?;
        let mut conn = self.control.pool().acquire().await?;
        Ok(webhooks::list(&mut conn, &tenant.id, module)
            .await?
            .iter()
            .map(EndpointView::from)
            .collect())
    }

    async fn find(&self, tenant: &Tenant, module: &str, id: &str) -> Result<Endpoint, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        webhooks::find(&mut conn, &tenant.id, module, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Endpoint `id` of `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`]; database errors.
    pub async fn endpoint(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
    ) -> Result<EndpointView, SoukError> {
        Ok(EndpointView::from(&self.find(tenant, module, id).await?))
    }

    /// Changes endpoint `id` of `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`]; [`SoukError::Invalid`] as for
    /// [`Events::create_endpoint`]; database errors.
    pub async fn update_endpoint(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
        change: EndpointChange,
    ) -> Result<EndpointView, SoukError> {
        let mut endpoint = self.find(tenant, module, id).await?;
        let manifest = self.installed(tenant, module).await?;
        if let Some(url) = change.url {
            check_url(&url, &self.config.network).map_err(SoukError::Invalid)?;
            endpoint.url = url;
        }
        match (change.event_types, change.all_event_types) {
            (Some(_), Some(true)) => {
                return Err(SoukError::Invalid(
                    "give either `event_types` or `all_event_types`, not both".to_owned(),
                ));
            }
            (Some(types), _) => endpoint.event_types = Some(Self::check_types(&manifest, &types)?),
            (None, Some(true)) => endpoint.event_types = None,
            (None, _) => {}
        }
        if let Some(description) = change.description {
            Self::check_description(&description)?;
            endpoint.description = description;
        }
        if let Some(enabled) = change.enabled {
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = rfc3339(self.now());
        let mut conn = self.control.pool().acquire().await?;
        webhooks::update(&mut conn, &endpoint).await?;
        Ok(EndpointView::from(&endpoint))
    }

    /// Deletes endpoint `id` of `module`; its pending deliveries are given
    /// up at their next turn.
    ///
    /// # Errors
    /// [`SoukError::NotFound`]; database errors.
    pub async fn delete_endpoint(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
    ) -> Result<(), SoukError> {
        self.find(tenant, module, id).await?;
        let mut conn = self.control.pool().acquire().await?;
        webhooks::remove(&mut conn, &tenant.id, id).await?;
        Ok(())
    }

    /// Gives endpoint `id` a new secret, shown this once; the old one keeps
    /// signing (beside the new) for the configured grace period.
    ///
    /// # Errors
    /// [`SoukError::NotFound`]; database errors.
    pub async fn rotate_secret(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
    ) -> Result<WithSecret, SoukError> {
        let mut endpoint = self.find(tenant, module, id).await?;
        let now = self.now();
        let grace = time::Duration::try_from(self.config.secret_grace)
            .map_err(|e| SoukError::Internal(e.into()))?;
        let secret = new_secret();
        endpoint.previous_secret = Some(std::mem::replace(&mut endpoint.secret, secret));
        endpoint.previous_secret_until = Some(rfc3339(now + grace));
        endpoint.updated_at = rfc3339(now);
        let mut conn = self.control.pool().acquire().await?;
        webhooks::update(&mut conn, &endpoint).await?;
        Ok(WithSecret {
            endpoint: EndpointView::from(&endpoint),
            secret: endpoint.secret,
        })
    }

    /// One page of endpoint `id`'s delivery log, newest first.
    ///
    /// # Errors
    /// [`SoukError::NotFound`]; database errors.
    pub async fn deliveries(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<DeliveryPage, SoukError> {
        self.find(tenant, module, id).await?;
        let limit = page_size(limit);
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let rows = event_store::webhook_page(&mut conn, id, before, limit).await?;
        let next_before = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|d| d.id))
            .flatten();
        Ok(DeliveryPage {
            deliveries: rows.into_iter().map(DeliveryView::from).collect(),
            next_before,
        })
    }

    /// Queues the event of delivery `delivery` of endpoint `id` again, as
    /// a new delivery due now (with a fresh retry window); answers it.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown endpoint or delivery;
    /// database errors.
    pub async fn redeliver(
        &self,
        tenant: &Tenant,
        module: &str,
        id: &str,
        delivery: i64,
    ) -> Result<DeliveryView, SoukError> {
        self.find(tenant, module, id).await?;
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let original = event_store::webhook_delivery(&mut conn, id, delivery)
            .await?
            .ok_or_else(|| {
                SoukError::NotFound(format!("no delivery {delivery} of this endpoint"))
            })?;
        let now = self.now();
        let mut marks = WorkMarks::default();
        marks.mark(super::WORK);
        let _marked = self
            .work
            .mark(&tenant.id, marks, now)
            .await
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("work hints: {e}")))?;
        let new_id = event_store::queue_webhook(
            &mut conn,
            id,
            &original.module,
            original.event_seq,
            event_store::millis(now),
        )
        .await?;
        let queued = event_store::webhook_delivery(&mut conn, id, new_id)
            .await?
            .ok_or_else(|| SoukError::Internal(anyhow::anyhow!("the redelivery vanished")))?;
        Ok(DeliveryView::from(queued))
    }

    /// One page of the log of `module`'s deliveries as a subscriber (the
    /// events of its dependencies), newest first; `status` filters.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed,
    /// [`SoukError::Invalid`] for an unknown status or cursor; database
    /// errors.
    pub async fn module_deliveries(
        &self,
        tenant: &Tenant,
        module: &str,
        status: Option<&str>,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ModuleDeliveryPage, SoukError> {
        self.installer.require(tenant, module).await?;
        if let Some(status) = status
            && !["pending", "handled", "failed", "skipped"].contains(&status)
        {
            return Err(SoukError::Invalid(format!(
                "`status` must be pending, handled, failed or skipped, not {status:?}"
            )));
        }
        let before = match before {
            Some(id) => Some(event_store::event_seq(id).ok_or_else(|| {
                SoukError::Invalid(format!("`before` must be an event id, not {id:?}"))
            })?),
            None => None,
        };
        let limit = page_size(limit);
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let rows = event_store::module_page(&mut conn, module, status, before, limit).await?;
        let next_before = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|d| event_store::event_id(d.event_seq)))
            .flatten();
        Ok(ModuleDeliveryPage {
            deliveries: rows.into_iter().map(ModuleDeliveryView::from).collect(),
            next_before,
        })
    }
}
