//! One pass of the event worker over one tenant: fan out, deliver to
//! subscriber modules, deliver to webhooks (see the module comment of
//! [`super`]).
//!
//! Nothing here holds a tenant connection while a module runs or a
//! receiver answers: each step acquires one for its statements.

use std::collections::HashMap;
use std::time::Duration;

use souk_module_registry::Manifest;
use time::OffsetDateTime;

use super::Events;
use super::sender::{self, Post, SendError};
use super::signing;
use crate::capabilities::log::printable;
use crate::clock::rfc3339;
use crate::control_plane::webhooks::{self, Endpoint};
use crate::entitlements::Decision;
use crate::error::{CallError, SoukError};
use crate::event_store::{self, Attempt, AttemptOutcome, ModuleOutcome, StoredEvent};
use crate::runtime::EventToDeliver;
use crate::tenancy::Tenant;

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 100;
/// Webhook deliveries attempted per pass (the rest at the next pass).
const WEBHOOKS_PER_PASS: i64 = 200;
/// Subscriber deliveries made per subscriber per pass.
const EVENTS_PER_SUBSCRIBER: usize = 200;
/// How long a paused delivery (endpoint disabled, plan without the
/// webhook feature, tenant at its call cap) waits before it is looked at
/// again.
const PAUSE: Duration = Duration::from_secs(60);
/// Longest module error kept in a subscriber's log.
const MAX_LOGGED_ERROR: usize = 1024;

/// What a pass did, and when the tenant has more due.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Events fanned out.
    pub fanned_out: usize,
    /// Deliveries to subscribers handled.
    pub handled: usize,
    /// Webhook deliveries delivered.
    pub delivered: usize,
    /// Attempts (of either kind) that failed.
    pub failed_attempts: usize,
    /// When the next delivery is due; `None`: nothing is pending.
    pub next_due: Option<OffsetDateTime>,
}

impl PassReport {
    fn due_at(&mut self, ms: i64) {
        let at = event_store::instant(ms);
        self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Events<'_> {
    /// One pass over `tenant_id`'s events.
    ///
    /// # Errors
    /// Database errors; what was recorded stays, and the next pass goes on
    /// from there.
    pub async fn pass(&self, tenant_id: &str) -> Result<PassReport, SoukError> {
        let tenant = match self.tenancy.by_id(tenant_id).await {
            Ok(tenant) => tenant,
            // A deleted tenant has nothing left to deliver.
            Err(SoukError::NotFound(_)) => return Ok(PassReport::default()),
            Err(e) => return Err(e),
        };
        let mut report = PassReport::default();
        let manifests = self.manifests(&tenant).await?;
        let endpoints = {
            let mut conn = self.control.pool().acquire().await?;
            webhooks::list_for_tenant(&mut conn, &tenant.id).await?
        };
        self.fan_out(&tenant, &manifests, &endpoints, &mut report)
            .await?;
        self.deliver_to_modules(&tenant, &manifests, &mut report)
            .await?;
        self.deliver_to_webhooks(&tenant, &manifests, &endpoints, &mut report)
            .await?;
        Ok(report)
    }

    /// The manifests of the tenant's installed modules, by slug.
    async fn manifests(&self, tenant: &Tenant) -> Result<HashMap<String, Manifest>, SoukError> {
        let mut manifests = HashMap::new();
        for installation in self.installer.list(tenant).await? {
            let resolved = self
                .catalog
                .resolve(&installation.module, Some(&installation.version))
                .await?;
            manifests.insert(installation.module.clone(), (*resolved.manifest).clone());
        }
        Ok(manifests)
    }

    /// Step 1: one delivery per endpoint and subscriber of each new event.
    async fn fan_out(
        &self,
        tenant: &Tenant,
        manifests: &HashMap<String, Manifest>,
        endpoints: &[Endpoint],
        report: &mut PassReport,
    ) -> Result<(), SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        loop {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let events = event_store::unfanned(&mut tx, FAN_OUT_BATCH).await?;
            if events.is_empty() {
                return Ok(());
            }
            let now = event_store::millis(self.now());
            for event in &events {
                for endpoint in endpoints.iter().filter(|e| {
                    e.enabled && e.module_slug == event.module && e.receives(&event.event_type)
                }) {
                    event_store::queue_webhook(
                        &mut tx,
                        &endpoint.id,
                        &event.module,
                        event.seq,
                        now,
                    )
                    .await?;
                }
                for (slug, manifest) in manifests {
                    if manifest
                        .events
                        .subscribes_to(&event.module, &event.event_type)
                    {
                        event_store::queue_module(&mut tx, slug, event.seq, now).await?;
                    }
                }
                event_store::mark_fanned_out(&mut tx, event.seq).await?;
            }
            tx.commit().await?;
            report.fanned_out += events.len();
        }
    }

    /// Step 2: each subscriber's pending events, in order; a failure stops
    /// that subscriber until its retry is due.
    async fn deliver_to_modules(
        &self,
        tenant: &Tenant,
        manifests: &HashMap<String, Manifest>,
        report: &mut PassReport,
    ) -> Result<(), SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let subscribers = {
            let mut conn = pool.acquire().await?;
            event_store::pending_subscribers(&mut conn).await?
        };
        for subscriber in subscribers {
            for turn in 0..=EVENTS_PER_SUBSCRIBER {
                if turn == EVENTS_PER_SUBSCRIBER {
                    // More than a pass takes: the next pass goes on at once.
                    report.due_at(event_store::millis(self.now()));
                    break;
                }
                let next = {
                    let mut conn = pool.acquire().await?;
                    event_store::next_for_subscriber(&mut conn, &subscriber).await?
                };
                let Some(delivery) = next else {
                    break;
                };
                let now = event_store::millis(self.now());
                if let Some(due) = delivery.next_attempt_at
                    && due > now
                {
                    report.due_at(due);
                    break;
                }
                let still = manifests.get(&subscriber).is_some_and(|m| {
                    m.events
                        .subscribes_to(&delivery.module, &delivery.event_type)
                });
                let record = async |status: &str,
                                    attempted: bool,
                                    next: Option<i64>,
                                    error: Option<&str>| {
                    let mut conn = pool.acquire().await?;
                    event_store::record_module_outcome(
                        &mut conn,
                        &subscriber,
                        delivery.event_seq,
                        ModuleOutcome {
                            status,
                            attempted,
                            next_ms: next,
                            error,
                            now_ms: event_store::millis(self.now()),
                        },
                    )
                    .await
                };
                if !still {
                    record(
                        "skipped",
                        false,
                        None,
                        Some("the module no longer subscribes to this event, or is not installed"),
                    )
                    .await?;
                    continue;
                }
                let event = {
                    let mut conn = pool.acquire().await?;
                    event_store::event(&mut conn, delivery.event_seq).await?
                };
                let Some(event) = event else {
                    record("skipped", false, None, Some("the event is gone")).await?;
                    continue;
                };
                let outcome = self.hand_to_module(tenant, &subscriber, event).await;
                let failure = match outcome {
                    Ok(Ok(())) => {
                        record("handled", true, None, None).await?;
                        report.handled += 1;
                        continue;
                    }
                    Ok(Err(message)) => message,
                    Err(SoukError::Module(
                        CallError::TenantBusy { .. } | CallError::Capacity { .. },
                    )) => {
                        // Not the handler's fault: try again soon, uncounted.
                        let at = now + ms(PAUSE).min(ms(self.config.retry_base));
                        record("pending", false, Some(at), delivery.last_error.as_deref()).await?;
                        report.due_at(at);
                        break;
                    }
                    Err(SoukError::Module(call)) => call.to_string(),
                    Err(SoukError::NotFound(_)) => {
                        record("skipped", false, None, Some("the module is not installed")).await?;
                        continue;
                    }
                    Err(SoukError::Revoked(message)) => message,
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.slug, module = %subscriber, error = %e, "event delivery to a module failed in the host");
                        "the host could not run the handler".to_owned()
                    }
                };
                report.failed_attempts += 1;
                let failure = printable(&failure, MAX_LOGGED_ERROR);
                let attempts = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
                if now - delivery.created_at >= ms(self.config.retry_window) {
                    tracing::warn!(tenant = %tenant.slug, module = %subscriber, event = %event_store::event_id(delivery.event_seq), "event handler failed past the retry window; passing over the event");
                    record("failed", true, None, Some(&failure)).await?;
                    continue;
                }
                let at = now + ms(self.config.backoff(attempts));
                record("pending", true, Some(at), Some(&failure)).await?;
                report.due_at(at);
                break;
            }
        }
        Ok(())
    }

    /// Runs `subscriber`'s `on-event` with `event` in a call of its own.
    async fn hand_to_module(
        &self,
        tenant: &Tenant,
        subscriber: &str,
        event: StoredEvent,
    ) -> Result<Result<(), String>, SoukError> {
        let event = EventToDeliver {
            id: event_store::event_id(event.seq),
            source_module: event.module,
            event_type: event.event_type,
            payload: event.payload,
            emitted_at: rfc3339(event_store::instant(event.created_at)),
        };
        self.dispatcher
            .run_background(
                &tenant.id,
                subscriber,
                self.call_timeout,
                Box::new(move |call| {
                    let event = event.clone();
                    Box::pin(async move { call.on_event(event).await })
                }),
            )
            .await
    }

    /// Step 3: due webhook deliveries, in event order.
    async fn deliver_to_webhooks(
        &self,
        tenant: &Tenant,
        manifests: &HashMap<String, Manifest>,
        endpoints: &[Endpoint],
        report: &mut PassReport,
    ) -> Result<(), SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let due = {
            let mut conn = pool.acquire().await?;
            event_store::due_webhooks(
                &mut conn,
                event_store::millis(self.now()),
                WEBHOOKS_PER_PASS,
            )
            .await?
        };
        let mut plan_allows: HashMap<String, Option<String>> = HashMap::new();
        for delivery in due {
            let now_at = self.now();
            let now = event_store::millis(now_at);
            let Some(endpoint) = endpoints.iter().find(|e| e.id == delivery.endpoint_id) else {
                let mut conn = pool.acquire().await?;
                event_store::abandon_webhook(&mut conn, delivery.id, "the endpoint was deleted")
                    .await?;
                continue;
            };
            let paused = if endpoint.enabled {
                if !plan_allows.contains_key(&delivery.module) {
                    let refusal = self
                        .webhook_refusal(tenant, manifests, &delivery.module)
                        .await;
                    plan_allows.insert(delivery.module.clone(), refusal);
                }
                plan_allows.get(&delivery.module).cloned().flatten()
            } else {
                Some("paused: the endpoint is disabled".to_owned())
            };
            if let Some(why) = paused {
                let at = now + ms(PAUSE);
                let mut conn = pool.acquire().await?;
                event_store::postpone_webhook(&mut conn, delivery.id, at, &why).await?;
                report.due_at(at);
                continue;
            }
            let event = {
                let mut conn = pool.acquire().await?;
                event_store::event(&mut conn, delivery.event_seq).await?
            };
            let Some(event) = event else {
                let mut conn = pool.acquire().await?;
                event_store::abandon_webhook(&mut conn, delivery.id, "the event is gone").await?;
                continue;
            };
            let result = self.post(tenant, endpoint, &event, now_at).await;
            let (status_code, error, excerpt, ok) = match result {
                Ok(sent) if (200..300).contains(&sent.status) => {
                    (Some(sent.status), None, Some(sent.excerpt), true)
                }
                Ok(sent) => (
                    Some(sent.status),
                    Some(format!("the receiver answered {}", sent.status)),
                    Some(sent.excerpt),
                    false,
                ),
                Err(e) => (None, Some(e.to_string()), None, false),
            };
            let attempts = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
            let done_at = event_store::millis(self.now());
            let outcome = if ok {
                report.delivered += 1;
                AttemptOutcome::Delivered
            } else {
                report.failed_attempts += 1;
                if done_at - delivery.window_start >= ms(self.config.retry_window) {
                    AttemptOutcome::Failed
                } else {
                    let at = done_at + ms(self.config.backoff(attempts));
                    report.due_at(at);
                    AttemptOutcome::RetryAt(at)
                }
            };
            let attempt = Attempt {
                at: done_at,
                status_code,
                error,
                excerpt,
                outcome,
            };
            let mut conn = pool.acquire().await?;
            event_store::record_webhook_attempt(&mut conn, delivery.id, &attempt).await?;
        }
        let mut conn = pool.acquire().await?;
        if let Some(next) = event_store::next_webhook_due(&mut conn).await? {
            report.due_at(next);
        }
        Ok(())
    }

    /// Why webhooks of `module` are paused for `tenant` (the plan lacks the
    /// feature the module declares for them), or `None`.
    async fn webhook_refusal(
        &self,
        tenant: &Tenant,
        manifests: &HashMap<String, Manifest>,
        module: &str,
    ) -> Option<String> {
        let manifest = manifests.get(module)?;
        let feature = manifest.events.webhook_feature.as_ref()?;
        // The engine answers from the grant; make sure it is loaded.
        if let Ok(Some(installation)) = self.installer.find(tenant, module).await
            && let Err(e) = self.usage.ensure_grant(tenant, &installation).await
        {
            tracing::warn!(tenant = %tenant.slug, module, error = %e, "webhooks: the grant could not be loaded");
            return Some("paused: the tenant's plan could not be read".to_owned());
        }
        match self
            .billing
            .engine()
            .check_feature(&tenant.id, module, feature)
        {
            Decision::Allowed => None,
            Decision::Denied(_) => Some(format!(
                "paused: the tenant's plan does not include `{feature}`, which webhooks of {module} need"
            )),
        }
    }

    /// Builds the body and headers of `event` for `endpoint` and POSTs it.
    async fn post(
        &self,
        tenant: &Tenant,
        endpoint: &Endpoint,
        event: &StoredEvent,
        now: OffsetDateTime,
    ) -> Result<sender::Sent, SendError> {
        let id = event_store::event_id(event.seq);
        let body = webhook_body(&id, event, &tenant.slug);
        let timestamp = now.unix_timestamp();
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret, &endpoint.previous_secret_until)
            && rfc3339(now).as_str() < until.as_str()
        {
            secrets.push(previous);
        }
        let signature = signing::header(&secrets, timestamp, body.as_bytes());
        sender::send(
            Post {
                url: &endpoint.url,
                headers: vec![
                    ("Souk-Webhook-Id", id),
                    ("Souk-Webhook-Timestamp", timestamp.to_string()),
                    ("Souk-Signature", signature),
                ],
                body,
            },
            &self.config.network,
            self.config.webhook_timeout,
        )
        .await
    }
}

/// The JSON body of a webhook delivery: `{"id", "type", "module",
/// "tenant", "created_at", "data"}`, `data` being the payload exactly as
/// the module emitted it.
pub fn webhook_body(id: &str, event: &StoredEvent, tenant_slug: &str) -> String {
    let text = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "{{\"id\":{},\"type\":{},\"module\":{},\"tenant\":{},\"created_at\":{},\"data\":{}}}",
        text(id),
        text(&event.event_type),
        text(&event.module),
        text(tenant_slug),
        text(&rfc3339(event_store::instant(event.created_at))),
        event.payload
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_payload_as_emitted() {
        let event = StoredEvent {
            seq: 7,
            module: "probe".into(),
            event_type: "thing.made".into(),
            payload: "{\"n\": 1, \"s\": \"\\\"q\\\"\"}".into(),
            created_at: 1_800_000_000_000,
        };
        let body = webhook_body(&event_store::event_id(7), &event, "acme");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["id"], "evt_0000000000000007");
        assert_eq!(parsed["type"], "thing.made");
        assert_eq!(parsed["module"], "probe");
        assert_eq!(parsed["tenant"], "acme");
        assert_eq!(parsed["created_at"], "2027-01-15T08:00:00Z");
        assert_eq!(parsed["data"]["s"], "\"q\"");
        assert!(body.ends_with("\"data\":{\"n\": 1, \"s\": \"\\\"q\\\"\"}}"));
    }
}
