//! Noticeboard: the SDK's worked example of module API 0.3.0, and the test
//! module that uses every one of its interfaces in one component.
//!
//! Members post notices, admins approve them, and anyone reads the approved
//! ones. Along the way the module uses:
//!
//! - `context`: the caller (a signed-in user with role and member number,
//!   an API key, a tenant token, the `system` caller of jobs and events);
//! - `db`: its own tables, with migrations and an install hook;
//! - `entitlements`: `max_notices` taken once per `Idempotency-Key`, with
//!   the host saying whether the key was a replay;
//! - `files`: a notice's attachment, stored by the host, served through a
//!   short-lived signed URL; an export job's PDF;
//! - `events`: `notice.posted` and `notice.approved`, for the tenant's
//!   webhooks; `on_event` records `events-probe.item.created`;
//! - `notify`: the author is emailed when a notice is approved;
//! - `jobs`: an export job with progress and a file as its result, and the
//!   daily `digest` schedule;
//! - the manifest's route access (`public`, `member`, `admin`), API keys
//!   (`api_access`), webhooks (`webhooks`) and single sign-on (`sso`).
//!
//! Routes (all JSON; refusals are RFC 9457 problem documents):
//!
//! | Route | Access | What it does |
//! | --- | --- | --- |
//! | `GET /notices` | public | approved notices, newest first |
//! | `GET /notices/{id}/attachment` | public | `{"url"}`: a signed URL of an approved notice's attachment, valid 5 minutes |
//! | `GET /me` | member | the caller as the host named it |
//! | `POST /notices` | member | `{"title", "text"}` → `201` the new notice (`200` the same one again for a repeated `Idempotency-Key`) |
//! | `PUT /notices/{id}/attachment?name=N&type=T` | member | the body becomes the notice's attachment (author or admin) → `201` file info |
//! | `GET /pending` | admin | notices waiting for approval |
//! | `POST /notices/{id}/approve` | admin | approves it, emits `notice.approved`, emails its author → `{"notice", "email"}` |
//! | `DELETE /notices/{id}` | admin | deletes it and its attachment, gives back its `max_notices` unit |
//! | `POST /exports` | admin | queues the `export` job → `202 {"job"}` |
//! | `GET /activity` | admin | what `on_event` and the `digest` job recorded |

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::entitlements;
use souk_sdk::events;
use souk_sdk::files;
use souk_sdk::jobs;
use souk_sdk::notify::{self, Recipient};
use souk_sdk::{
    CallerKind, Event, FeatureKind, Gates, HookError, Job, JobOutput, LimitKind, Migration, Module,
    Problem, Request, Response, Router, context, params,
};

/// How long a public attachment URL is valid, in seconds.
const ATTACHMENT_URL_TTL: u32 = 300;

/// The problem `type` of an unknown notice.
const NO_SUCH_NOTICE: &str = "https://souk.dev/problems/noticeboard/no-such-notice";

struct Noticeboard;

impl Module for Noticeboard {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_notices",
            "CREATE TABLE notices (id INTEGER PRIMARY KEY, title TEXT NOT NULL, \
             text TEXT NOT NULL, author_kind TEXT NOT NULL, author_id TEXT NOT NULL, \
             author_name TEXT NOT NULL, idempotency_key TEXT UNIQUE, \
             approved INTEGER NOT NULL DEFAULT 0, attachment TEXT); \
             CREATE TABLE activity (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, \
             detail TEXT NOT NULL)",
            "DROP TABLE activity; DROP TABLE notices",
        )]
    }

    /// A welcome notice, approved, posted by the module itself.
    fn install() -> Result<(), HookError> {
        db::execute(
            "INSERT INTO notices (title, text, author_kind, author_id, author_name, approved) \
             VALUES (?1, ?2, 'system', 'noticeboard', 'Noticeboard', 1)",
            params![
                "Welcome",
                "Members post notices here; an admin approves them."
            ],
        )?;
        Ok(())
    }

    fn gates() -> Gates {
        Gates::new()
            .feature(
                "api_access",
                "The tenant's own systems call the noticeboard with an API key.",
            )
            .feature("webhooks", "Webhooks of notice events.")
            .feature_of_kind(
                "sso",
                "Members sign in with the tenant's OpenID Connect provider.",
                FeatureKind::Sso,
            )
            .limit(
                "max_notices",
                "Notices a tenant may keep.",
                LimitKind::Count,
            )
            .limit(
                "attachment_bytes",
                "Bytes of attachments the tenant may keep.",
                LimitKind::Storage,
            )
            .limit(
                "emails_per_month",
                "Emails to authors per month.",
                LimitKind::Email,
            )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/notices", list_approved)
            .get("/notices/{id}/attachment", attachment_url)
            .get("/me", me)
            .post("/notices", post_notice)
            .put("/notices/{id}/attachment", attach)
            .get("/pending", list_pending)
            .post("/notices/{id}/approve", approve)
            .delete("/notices/{id}", delete)
            .post("/exports", export)
            .get("/activity", activity)
            .handle(request)
    }

    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        match job.name.as_str() {
            "export" => export_job(),
            "digest" => digest_job(),
            other => Err(HookError::new(format!("no job named {other}"))),
        }
    }

    fn on_event(event: Event) -> Result<(), HookError> {
        // At least once: the same event id may come again after a failure.
        db::execute(
            "INSERT INTO activity (kind, detail) SELECT 'event', ?1 \
             WHERE NOT EXISTS (SELECT 1 FROM activity WHERE kind = 'event' AND detail = ?1)",
            params![format!(
                "{} {}.{} {}",
                event.id, event.source_module, event.event_type, event.payload
            )],
        )?;
        Ok(())
    }
}

/// One notice as the module answers it.
#[derive(Serialize)]
struct Notice {
    id: i64,
    title: String,
    text: String,
    author: String,
    approved: bool,
    attachment: Option<String>,
}

const NOTICE_COLUMNS: &str = "id, title, text, author_name, approved, attachment";

impl FromRow for Notice {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Notice {
            id: row.get("id")?,
            title: row.get("title")?,
            text: row.get("text")?,
            author: row.get("author_name")?,
            approved: row.get("approved")?,
            attachment: row.get("attachment")?,
        })
    }
}

fn no_such_notice() -> Problem {
    Problem::new(404, NO_SUCH_NOTICE, "No such notice")
}

/// The notice `{id}` of the request's path.
fn notice_of(request: &Request) -> Result<Notice, Problem> {
    let id: i64 = request.param("id")?.parse().map_err(|_| no_such_notice())?;
    db::query_optional(
        &format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE id = ?1"),
        params![id],
    )?
    .ok_or_else(no_such_notice)
}

fn list_where(approved: bool) -> Result<Response, Problem> {
    let notices: Vec<Notice> = db::query_as(
        &format!(
            "SELECT {NOTICE_COLUMNS} FROM notices WHERE approved = ?1 ORDER BY id DESC LIMIT 100"
        ),
        params![approved],
    )?;
    Ok(Response::json(200, &json!({ "notices": notices })))
}

/// `GET /notices` (public).
fn list_approved(_request: &Request) -> Result<Response, Problem> {
    list_where(true)
}

/// `GET /pending` (admin).
fn list_pending(_request: &Request) -> Result<Response, Problem> {
    list_where(false)
}

/// `GET /me` (member): who the host says is calling.
fn me(_request: &Request) -> Response {
    let caller = context().caller;
    Response::json(
        200,
        &json!({
            "kind": caller.kind.as_str(),
            "id": caller.id,
            "name": caller.name,
            "admin": caller.is_admin(),
            "member_number": caller.member_number,
        }),
    )
}

#[derive(Deserialize)]
struct NewNotice {
    title: String,
    text: String,
}

/// `POST /notices` (member).
fn post_notice(request: &Request) -> Result<Response, Problem> {
    let new: NewNotice = request.json()?;
    if new.title.trim().is_empty() || new.title.len() > 200 {
        return Err(Problem::unprocessable(
            "`title` must be 1 to 200 characters",
        ));
    }
    if new.text.len() > 10_000 {
        return Err(Problem::unprocessable(
            "`text` must be at most 10,000 characters",
        ));
    }
    let idempotency_key = request.header("idempotency-key").map(str::to_owned);
    let usage = match &idempotency_key {
        Some(key) => {
            let counted = entitlements::consume_once_counted("max_notices", 1, key)?;
            if counted.replay {
                // The host counted this key before: answer what was made then.
                let earlier: Option<Notice> = db::query_optional(
                    &format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE idempotency_key = ?1"),
                    params![key.as_str()],
                )?;
                if let Some(notice) = earlier {
                    return Ok(Response::json(
                        200,
                        &json!({ "notice": notice, "replay": true, "usage": counted.usage }),
                    ));
                }
            }
            counted.usage
        }
        None => entitlements::consume("max_notices", 1)?,
    };
    let caller = context().caller;
    let changes = db::execute(
        "INSERT INTO notices (title, text, author_kind, author_id, author_name, idempotency_key) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            new.title.trim(),
            new.text.as_str(),
            caller.kind.as_str(),
            caller.id.as_str(),
            caller.name.as_str(),
            idempotency_key
        ],
    )?;
    let id = changes.last_insert_id.unwrap_or_default();
    let event = events::emit(
        "notice.posted",
        &json!({ "id": id, "title": new.title.trim(), "author": caller.name }),
    )?;
    let notice: Notice = db::query_one(
        &format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE id = ?1"),
        params![id],
    )?;
    Ok(Response::json(
        201,
        &json!({ "notice": notice, "replay": false, "usage": usage, "event": event }),
    ))
}

/// `PUT /notices/{id}/attachment?name=N&type=T` (member: the author, or an
/// admin).
fn attach(request: &Request) -> Result<Response, Problem> {
    let notice = notice_of(request)?;
    let caller = context().caller;
    if !caller.is_admin() {
        let author: (String,) = db::query_one(
            "SELECT author_id FROM notices WHERE id = ?1",
            params![notice.id],
        )?;
        if author.0 != caller.id {
            return Err(Problem::from_status(403)
                .with_detail("only the notice's author or an admin may attach a file"));
        }
    }
    let name = request.query("name").unwrap_or_else(|| "attachment".into());
    let content_type = request.query("type").unwrap_or_default();
    let file = files::put(&name, &content_type, request.body())?;
    if let Some(old) = &notice.attachment {
        files::delete(old)?;
    }
    db::execute(
        "UPDATE notices SET attachment = ?1 WHERE id = ?2",
        params![file.id.as_str(), notice.id],
    )?;
    Ok(Response::json(201, &file))
}

/// `GET /notices/{id}/attachment` (public): approved notices only.
fn attachment_url(request: &Request) -> Result<Response, Problem> {
    let notice = notice_of(request)?;
    let file = match (notice.approved, notice.attachment) {
        (true, Some(file)) => file,
        _ => return Err(no_such_notice()),
    };
    let url = files::signed_url(&file, ATTACHMENT_URL_TTL)?;
    Ok(Response::json(200, &json!({ "url": url })))
}

/// `POST /notices/{id}/approve` (admin).
fn approve(request: &Request) -> Result<Response, Problem> {
    let notice = notice_of(request)?;
    if notice.approved {
        return Ok(Response::json(
            200,
            &json!({ "notice": notice, "email": null }),
        ));
    }
    db::execute(
        "UPDATE notices SET approved = 1 WHERE id = ?1",
        params![notice.id],
    )?;
    events::emit(
        "notice.approved",
        &json!({ "id": notice.id, "title": notice.title }),
    )?;
    let (author_kind, author_id): (String, String) = db::query_one(
        "SELECT author_kind, author_id FROM notices WHERE id = ?1",
        params![notice.id],
    )?;
    // Only a person can be emailed; a notice posted with a token has none.
    let email = if author_kind == CallerKind::User.as_str() {
        Some(notify::email(
            Recipient::User(&author_id),
            &format!("Your notice \u{201c}{}\u{201d} is up", notice.title),
            &format!(
                "An admin approved your notice \u{201c}{}\u{201d}; everyone can read it now.",
                notice.title
            ),
            None,
        )?)
    } else {
        None
    };
    let notice = notice_of(request)?;
    Ok(Response::json(
        200,
        &json!({ "notice": notice, "email": email }),
    ))
}

/// `DELETE /notices/{id}` (admin).
fn delete(request: &Request) -> Result<Response, Problem> {
    let notice = notice_of(request)?;
    if let Some(file) = &notice.attachment {
        files::delete(file)?;
    }
    db::execute("DELETE FROM notices WHERE id = ?1", params![notice.id])?;
    entitlements::release("max_notices", 1)?;
    Ok(Response::no_content())
}

/// `POST /exports` (admin): the export runs after the request commits.
fn export(_request: &Request) -> Result<Response, Problem> {
    let job = jobs::enqueue("export", &json!({}))?;
    Ok(Response::json(202, &json!({ "job": job })))
}

/// `GET /activity` (admin).
fn activity(_request: &Request) -> Result<Response, Problem> {
    let rows: Vec<(String, String)> =
        db::query_as("SELECT kind, detail FROM activity ORDER BY id", params![])?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|(kind, detail)| json!({ "kind": kind, "detail": detail }))
        .collect();
    Ok(Response::json(200, &json!({ "activity": rows })))
}

/// The `export` job: every approved notice into a PDF, one line each,
/// reporting progress per notice; the PDF is the job's result file.
fn export_job() -> Result<JobOutput, HookError> {
    let notices: Vec<Notice> = db::query_as(
        &format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE approved = 1 ORDER BY id"),
        params![],
    )?;
    let total = notices.len() as u64;
    let mut lines = Vec::with_capacity(notices.len() + 1);
    lines.push(format!("Noticeboard: {total} notices"));
    for (done, notice) in notices.iter().enumerate() {
        lines.push(format!(
            "{}. {} ({})",
            notice.id, notice.title, notice.author
        ));
        jobs::progress(done as u64 + 1, total, format!("notice {}", notice.id));
    }
    let file = files::put("notices.pdf", "application/pdf", &pdf(&lines))?;
    Ok(JobOutput::file(file.id))
}

/// The daily `digest` schedule: records how many notices wait.
fn digest_job() -> Result<JobOutput, HookError> {
    let (pending,): (i64,) =
        db::query_one("SELECT count(*) FROM notices WHERE approved = 0", params![])?;
    db::execute(
        "INSERT INTO activity (kind, detail) VALUES ('digest', ?1)",
        params![format!("{pending} pending")],
    )?;
    JobOutput::json(&json!({ "pending": pending }))
}

/// A one-page PDF 1.4 with `lines` of Helvetica text (only printable ASCII
/// is kept; the rest becomes `?`).
fn pdf(lines: &[String]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 50 800 Td 16 TL\n");
    for line in lines {
        let escaped: String = line
            .chars()
            .map(|c| match c {
                '(' | ')' | '\\' => format!("\\{c}"),
                ' '..='~' => c.to_string(),
                _ => "?".to_owned(),
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

souk_sdk::export_module!(Noticeboard);

#[cfg(test)]
mod tests {
    use super::pdf;

    #[test]
    fn the_pdf_cross_reference_points_at_each_object() {
        let bytes = pdf(&["A (first) line".to_owned(), "caf\u{e9}".to_owned()]);
        let text = String::from_utf8(bytes.clone()).expect("ASCII");
        assert!(text.starts_with("%PDF-1.4\n"));
        assert!(text.contains("(A \\(first\\) line) Tj"));
        assert!(text.contains("(caf?) Tj"));
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|rest| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[startxref..].starts_with("xref\n0 6\n"));
        let entries: Vec<usize> = text[startxref..]
            .lines()
            .skip(3)
            .take(5)
            .map(|line| line[..10].parse().expect("offset"))
            .collect();
        for (i, offset) in entries.into_iter().enumerate() {
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj\n", i + 1)),
                "object {} at {offset}",
                i + 1
            );
        }
    }
}
