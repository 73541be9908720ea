//! Attachments (plus): files on posts, stored by the host (`files`), whose
//! type the host checks against the bytes and the manifest's allow-list
//! and whose bytes count against the plan's `attachment_bytes`. Served
//! through short-lived signed URLs while their post is shown.

use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, files, params};

use crate::posts;
use crate::who::Who;

/// The largest attachment, in bytes (below the host's 1 MiB request body
/// cap, so the module's own answer is what a client meets).
pub const MAX_ATTACHMENT_BYTES: usize = 512 * 1024;
/// At most this many attachments per post.
const MAX_PER_POST: i64 = 5;
/// How long a download URL is valid, in seconds.
const URL_TTL: u32 = 300;

fn no_such_attachment() -> Problem {
    Problem::new(
        404,
        "https://souk.dev/problems/forum/no-such-attachment",
        "No such attachment",
    )
}

/// The attachments of post `post`: `[{id, name, content_type, size}]`.
///
/// # Errors
///
/// Database errors.
pub fn of_post(post: i64) -> Result<Vec<serde_json::Value>, Problem> {
    let rows: Vec<(i64, String, String, i64)> = db::query_as(
        "SELECT id, name, content_type, size FROM attachments WHERE post_id = ?1 ORDER BY id",
        params![post],
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, name, content_type, size)| {
            json!({ "id": id, "name": name, "content_type": content_type, "size": size })
        })
        .collect())
}

/// `PUT /posts/{id}/attachments?name=N&type=T` (member, plus): the body is
/// the file; the post's author only, while it is shown → 201.
pub fn attach(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let post_id: i64 = request
        .param("id")?
        .parse()
        .map_err(|_| posts::no_such_post())?;
    let post = posts::load(&who, post_id)?;
    let (author,): (String,) = db::query_one(
        "SELECT author_user FROM posts WHERE id = ?1",
        params![post_id],
    )?;
    if author != who.id {
        return Err(Problem::from_status(403).with_detail("only the post's author attaches files"));
    }
    if post.html.is_none() {
        return Err(Problem::conflict(
            "a deleted or hidden post takes no attachments",
        ));
    }
    let bytes = request.body();
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(Problem::new(
            413,
            "https://souk.dev/problems/forum/attachment-too-large",
            "Attachment too large",
        )
        .with_detail("an attachment may be at most 512 KiB")
        .with_extension("limit", json!(MAX_ATTACHMENT_BYTES)));
    }
    let (count,): (i64,) = db::query_one(
        "SELECT count(*) FROM attachments WHERE post_id = ?1",
        params![post_id],
    )?;
    if count >= MAX_PER_POST {
        return Err(Problem::conflict("a post holds at most 5 attachments"));
    }
    let name = request.query("name").unwrap_or_else(|| "attachment".into());
    let content_type = request.query("type").unwrap_or_default();
    let file = files::put(&name, &content_type, bytes)?;
    let changes = db::execute(
        "INSERT INTO attachments (post_id, file_id, name, content_type, size, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            post_id,
            file.id.as_str(),
            file.name.as_str(),
            file.content_type.as_str(),
            file.size as i64,
            crate::clock::now()
        ],
    )?;
    Ok(Response::json(
        201,
        &json!({
            "attachment": {
                "id": changes.last_insert_id.unwrap_or_default(),
                "name": file.name,
                "content_type": file.content_type,
                "size": file.size,
            }
        }),
    ))
}

/// `GET /attachments/{id}` (public, plus): `{"url"}`, a signed download
/// URL valid 5 minutes, while its post is shown to the caller.
pub fn url(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let id: i64 = request
        .param("id")?
        .parse()
        .map_err(|_| no_such_attachment())?;
    let row: Option<(i64, String)> = db::query_optional(
        "SELECT post_id, file_id FROM attachments WHERE id = ?1",
        params![id],
    )?;
    let (post_id, file) = row.ok_or_else(no_such_attachment)?;
    let post = posts::load(&who, post_id).map_err(|_| no_such_attachment())?;
    if post.html.is_none() {
        return Err(no_such_attachment());
    }
    let url = files::signed_url(&file, URL_TTL)?;
    Ok(Response::json(200, &json!({ "url": url })))
}
