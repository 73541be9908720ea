//! Batch generation (pro, feature `batch_generation`): one request issues
//! cards to every member matching a filter, as a background job with
//! progress and a per-member result.
//!
//! `POST /batches` checks the `max_cards` room for the whole batch first
//! and says how many fit (402 when none does), then queues job
//! `issue_batch`. The job goes through the members in number order: a
//! member with an active card (when the tenant allows one only) is skipped
//! saying so, a member past the room is skipped with `no room under
//! max_cards`, every other gets a card. Its result (the job's `result`):
//! `{"issued": [{"member", "card"}], "skipped": [{"member", "why"}]}`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db;
use souk_sdk::entitlements;
use souk_sdk::{HookError, JobOutput, Problem, Request, Response, jobs, params};

use crate::card::{CardRequest, FieldCheck};
use crate::dates::Day;
use crate::{render, routes, settings};

/// The most members one batch goes through (its result stays well under
/// the host's 64 KiB job result).
const MAX_BATCH: u32 = 1000;

/// The body of `POST /batches` and the job's arguments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Members of this Membership status (default `active`).
    #[serde(default = "active")]
    pub status: String,
    /// The template's slug (default `classic`).
    #[serde(default = "classic")]
    pub template: String,
    /// `YYYY-MM-DD`; today plus the tenant's `valid_days` when absent.
    #[serde(default)]
    pub expires_on: Option<String>,
}

fn active() -> String {
    "active".to_owned()
}

fn classic() -> String {
    "classic".to_owned()
}

/// The members a batch goes through, in number order.
fn members(status: &str) -> Result<Vec<String>, Problem> {
    let rows: Vec<(String,)> = db::query_as(
        "SELECT number FROM membership.members WHERE status = ?1 ORDER BY number LIMIT ?2",
        params![status, MAX_BATCH],
    )?;
    Ok(rows.into_iter().map(|(number,)| number).collect())
}

/// Checks the body: a member status, a template that exists, a date.
fn validate(batch: &Batch, today: Day) -> Result<(), Problem> {
    let mut check = FieldCheck::default();
    if !matches!(batch.status.as_str(), "active" | "suspended") {
        check.fail("status", "cards go to `active` or `suspended` members");
    }
    match render::find(&batch.template)? {
        None => check.fail(
            "template",
            format!("no template has slug `{}`", batch.template),
        ),
        // The plan's 402 when it lacks the template's tier.
        Some(template) => {
            entitlements::check_feature(template.feature()).map_err(Problem::from)?;
        }
    }
    if let Some(text) = &batch.expires_on {
        match Day::parse(text) {
            Ok(day) if day <= today => check.fail("expires_on", "must be after today"),
            Ok(_) => {}
            Err(message) => check.fail("expires_on", message),
        }
    }
    check.finish()
}

/// `POST /batches` → 202 `{"job", "members", "fit"}`.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let batch: Batch = request.json()?;
    validate(&batch, Day::today())?;
    // A batch gives no custom field values: refused while some are required.
    #[cfg(feature = "release-1-1")]
    crate::fields::validate(None)?;
    let members = members(&batch.status)?;
    let fit = match entitlements::usage("max_cards").and_then(|usage| usage.remaining()) {
        Some(remaining) => remaining.min(members.len() as u64),
        None => members.len() as u64,
    };
    if fit == 0 && !members.is_empty() {
        entitlements::check_limit("max_cards", 1).map_err(Problem::from)?;
    }
    let job = jobs::enqueue("issue_batch", &batch)
        .map_err(|error| Problem::internal(format!("the batch was not queued: {error}")))?;
    Ok(Response::json(
        202,
        &json!({ "job": job, "members": members.len(), "fit": fit }),
    ))
}

/// The `issue_batch` job.
///
/// # Errors
///
/// A database failure (the host retries the whole batch: its writes roll
/// back together).
pub fn run(batch: &Batch) -> Result<JobOutput, HookError> {
    let problem = |p: Problem| HookError::new(p.to_json());
    let settings = settings::load().map_err(problem)?;
    let today = Day::today();
    let expires_on = match &batch.expires_on {
        Some(text) => Day::parse(text).map_err(HookError::new)?,
        None => today.plus(settings.valid_days),
    };
    let members = members(&batch.status).map_err(problem)?;
    let total = members.len() as u64;
    let mut issued = Vec::new();
    let mut skipped = Vec::new();
    for (done, member) in members.iter().enumerate() {
        let request = CardRequest {
            member: member.clone(),
            number: None,
            template: batch.template.clone(),
            issued_on: today,
            expires_on,
        };
        match routes::issue(&request, &settings) {
            Ok(card) => issued.push(json!({"member": member, "card": card.number})),
            Err(refusal) => {
                let why = match refusal.status() {
                    402 | 403
                        if refusal
                            .detail()
                            .is_some_and(|d| d.starts_with("`max_cards`")) =>
                    {
                        "no room under max_cards".to_owned()
                    }
                    402 | 403 => refusal.detail().unwrap_or("refused by the plan").to_owned(),
                    409 => "has an active card".to_owned(),
                    422 | 404 => refusal.detail().unwrap_or("invalid").to_owned(),
                    _ => return Err(problem(refusal)),
                };
                skipped.push(json!({"member": member, "why": why}));
            }
        }
        if done % 10 == 9 || done as u64 + 1 == total {
            jobs::progress(
                done as u64 + 1,
                total,
                format!("{} issued, {} skipped", issued.len(), skipped.len()),
            );
        }
    }
    JobOutput::json(&json!({ "issued": issued, "skipped": skipped }))
}
