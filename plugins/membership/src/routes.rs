//! The module's HTTP API. Every route here is listed under `routes` in
//! module.yaml; errors are problem documents (see `member.rs` for the
//! module's own problem types).

use serde_json::json;
use souk_sdk::db::{self, DbError};
use souk_sdk::{Problem, Request, Response, Router, params};

use crate::member::{
    MEMBER_COLUMNS, Member, MemberFields, MemberNumber, MemberPatch, MemberReplacement,
    MemberStatus, NewMember, duplicate_number, member_not_found,
};

/// Members per page of `GET /members` when `limit` is not given, and the
/// most a client may ask for.
const MAX_PAGE: u32 = 1000;
/// Rows fetched per query while exporting, below the host's per-query cap.
const EXPORT_BATCH: u32 = 5000;
/// How many generated numbers to try before giving up because all of them
/// were taken by hand-picked numbers.
const MAX_NUMBER_ATTEMPTS: usize = 100;

/// The module's routes.
pub fn router() -> Router {
    let router = Router::new()
        .get("/members", list_members)
        .post("/members", create_member)
        .get("/members/{number}", show_member)
        .put("/members/{number}", replace_member)
        .patch("/members/{number}", update_member)
        .delete("/members/{number}", delete_member)
        .get("/export/members.csv", export_members);
    #[cfg(feature = "member-notes")]
    let router = router
        .get("/members/{number}/notes", notes::show_notes)
        .put("/members/{number}/notes", notes::replace_notes);
    router
}

/// `GET /members[?status=active|suspended|left][&limit=N][&offset=N]`:
/// members ordered by number.
fn list_members(request: &Request) -> Result<Response, Problem> {
    let status = match request.query("status") {
        Some(text) => Some(MemberStatus::parse(&text).map_err(|message| {
            Problem::bad_request(format!("query parameter `status`: {message}"))
        })?),
        None => None,
    };
    let limit = request.query_parsed::<u32>("limit")?.unwrap_or(MAX_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request(format!(
            "query parameter `limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let offset = request.query_parsed::<u32>("offset")?.unwrap_or(0);
    let members: Vec<Member> = db::query_as(
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM members \
             WHERE (?1 IS NULL OR status = ?1) ORDER BY number LIMIT ?2 OFFSET ?3"
        ),
        params![status.map(MemberStatus::as_str), limit, offset],
    )?;
    Ok(Response::json(
        200,
        &json!({ "members": members, "limit": limit, "offset": offset }),
    ))
}

/// `POST /members`: adds a member; 201 with the member, 409 when the number
/// is taken.
fn create_member(request: &Request) -> Result<Response, Problem> {
    let (number, fields) = request.json::<NewMember>()?.validate()?;
    let number = match number {
        Some(number) if find_member(number.as_str())?.is_some() => {
            return Err(duplicate_number(number.as_str()));
        }
        Some(number) => number,
        None => next_free_number()?,
    };
    #[cfg(feature = "member-events")]
    crate::tally::take_one()?;
    db::execute(
        "INSERT INTO members (number, name, email, status, joined_on) \
         VALUES (?1, ?2, ?3, ?4, COALESCE(?5, date('now')))",
        params![
            number.as_str(),
            &fields.name,
            &fields.email,
            fields.status.as_str(),
            &fields.joined_on
        ],
    )
    .map_err(|error| constraint_as_duplicate(error, number.as_str()))?;
    let member = find_member(number.as_str())?
        .ok_or_else(|| Problem::internal(format!("member `{number}` vanished after insert")))?;
    #[cfg(feature = "member-events")]
    announce(None, &member)?;
    Ok(Response::json(201, &member))
}

/// `GET /members/{number}`.
fn show_member(request: &Request) -> Result<Response, Problem> {
    let number = request.param("number")?;
    let member = find_member(number)?.ok_or_else(|| member_not_found(number))?;
    Ok(Response::json(200, &member))
}

/// `PUT /members/{number}`: replaces every field but the number.
fn replace_member(request: &Request) -> Result<Response, Problem> {
    let number = request.param("number")?;
    let fields = request.json::<MemberReplacement>()?.validate(number)?;
    write_member(number, &fields)
}

/// `PATCH /members/{number}`: changes the fields present in the body.
fn update_member(request: &Request) -> Result<Response, Problem> {
    let number = request.param("number")?;
    let patch = request.json::<MemberPatch>()?;
    let current = find_member(number)?.ok_or_else(|| member_not_found(number))?;
    let fields = patch.apply(current)?;
    write_member(number, &fields)
}

/// `DELETE /members/{number}`: removes the member for good (to keep the
/// record, set the status to `left` instead).
fn delete_member(request: &Request) -> Result<Response, Problem> {
    let number = request.param("number")?;
    let member = find_member(number)?.ok_or_else(|| member_not_found(number))?;
    let changes = db::execute("DELETE FROM members WHERE number = ?1", params![number])?;
    if changes.rows_affected == 0 {
        return Err(member_not_found(number));
    }
    #[cfg(feature = "member-events")]
    {
        crate::tally::give_back_one()?;
        if member.status != MemberStatus::Left {
            crate::tally::emit(
                "member_left",
                &crate::tally::MemberEvent {
                    number,
                    name: &member.name,
                    status: MemberStatus::Left.as_str(),
                    reason: Some("deleted"),
                },
            )?;
        }
    }
    #[cfg(not(feature = "member-events"))]
    let _ = member;
    Ok(Response::no_content())
}

/// `GET /export/members.csv` (feature `member_export`): every member as
/// RFC 4180 CSV, ordered by number.
fn export_members(_request: &Request) -> Result<Response, Problem> {
    let mut csv = String::from("number,name,email,status,joined_on\r\n");
    let mut offset: u32 = 0;
    loop {
        let batch: Vec<Member> = db::query_as(
            &format!("SELECT {MEMBER_COLUMNS} FROM members ORDER BY number LIMIT ?1 OFFSET ?2"),
            params![EXPORT_BATCH, offset],
        )?;
        for member in &batch {
            let fields = [
                member.number.as_str(),
                member.name.as_str(),
                member.email.as_deref().unwrap_or(""),
                member.status.as_str(),
                member.joined_on.as_str(),
            ];
            let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            csv.push_str(&line.join(","));
            csv.push_str("\r\n");
        }
        if batch.len() < EXPORT_BATCH as usize {
            break;
        }
        offset += EXPORT_BATCH;
    }
    Ok(Response::text(200, csv)
        .with_header("content-type", "text/csv; charset=utf-8")
        .with_header(
            "content-disposition",
            "attachment; filename=\"members.csv\"",
        ))
}

/// Quotes a CSV field when it holds a separator, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// The member with this number, if any.
fn find_member(number: &str) -> Result<Option<Member>, Problem> {
    Ok(db::query_optional(
        &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE number = ?1"),
        params![number],
    )?)
}

/// Writes validated fields to an existing member and returns it.
fn write_member(number: &str, fields: &MemberFields) -> Result<Response, Problem> {
    let before = find_member(number)?.ok_or_else(|| member_not_found(number))?;
    let changes = db::execute(
        "UPDATE members SET name = ?2, email = ?3, status = ?4, \
         joined_on = COALESCE(?5, joined_on) WHERE number = ?1",
        params![
            number,
            &fields.name,
            &fields.email,
            fields.status.as_str(),
            &fields.joined_on
        ],
    )?;
    if changes.rows_affected == 0 {
        return Err(member_not_found(number));
    }
    let member = find_member(number)?.ok_or_else(|| member_not_found(number))?;
    #[cfg(feature = "member-events")]
    announce(Some(&before), &member)?;
    #[cfg(not(feature = "member-events"))]
    let _ = before;
    Ok(Response::json(200, &member))
}

/// Emits what changed (release 1.2.0): `member_created` for a new member,
/// `member_updated` for any write to an existing one, and `member_left`
/// when the status becomes `left`.
#[cfg(feature = "member-events")]
fn announce(before: Option<&Member>, after: &Member) -> Result<(), Problem> {
    use crate::tally::{MemberEvent, emit};
    let event = MemberEvent {
        number: &after.number,
        name: &after.name,
        status: after.status.as_str(),
        reason: None,
    };
    emit(
        if before.is_some() { "member_updated" } else { "member_created" },
        &event,
    )?;
    let was_left = before.is_some_and(|member| member.status == MemberStatus::Left);
    if after.status == MemberStatus::Left && !was_left {
        emit(
            "member_left",
            &MemberEvent {
                reason: Some("left"),
                ..event
            },
        )?;
    }
    Ok(())
}

/// Hands out the next generated member number (`M-0001`, ...), skipping
/// numbers already taken by hand.
fn next_free_number() -> Result<MemberNumber, Problem> {
    for _ in 0..MAX_NUMBER_ATTEMPTS {
        let changes = db::execute(
            "UPDATE member_numbering SET next_value = next_value + 1 WHERE id = 1",
            params![],
        )?;
        if changes.rows_affected == 0 {
            return Err(Problem::internal(
                "member numbering has no counter row (the install seed is missing); \
                 reinstall the membership module or pass `number` explicitly",
            ));
        }
        let (prefix, value): (String, i64) = db::query_one(
            "SELECT prefix, next_value - 1 FROM member_numbering WHERE id = 1",
            params![],
        )?;
        let candidate = MemberNumber::parse(&format!("{prefix}{value:04}"))
            .map_err(|reason| Problem::internal(format!("the generated member number {reason}")))?;
        if find_member(candidate.as_str())?.is_none() {
            return Ok(candidate);
        }
    }
    Err(Problem::new(
        409,
        "https://souk.dev/problems/membership/no-free-member-number",
        "No free member number",
    )
    .with_detail(format!(
        "the next {MAX_NUMBER_ATTEMPTS} generated member numbers are all taken; pass `number` explicitly"
    )))
}

/// A UNIQUE violation on insert means another member got the number first.
fn constraint_as_duplicate(error: DbError, number: &str) -> Problem {
    if error.is_constraint() {
        duplicate_number(number)
    } else {
        error.into()
    }
}

/// Notes on members (release 1.1.0, feature `member_notes`).
#[cfg(feature = "member-notes")]
mod notes {
    use serde::Deserialize;
    use serde_json::json;
    use souk_sdk::db;
    use souk_sdk::{Problem, Request, Response, params};

    use crate::member::{member_not_found, validate_notes};

    /// The body of `PUT /members/{number}/notes`; `null` removes the notes.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NotesBody {
        notes: Option<String>,
    }

    /// `GET /members/{number}/notes`.
    pub fn show_notes(request: &Request) -> Result<Response, Problem> {
        let number = request.param("number")?;
        let (notes,): (Option<String>,) = db::query_optional(
            "SELECT notes FROM members WHERE number = ?1",
            params![number],
        )?
        .ok_or_else(|| member_not_found(number))?;
        Ok(Response::json(
            200,
            &json!({ "number": number, "notes": notes }),
        ))
    }

    /// `PUT /members/{number}/notes`.
    pub fn replace_notes(request: &Request) -> Result<Response, Problem> {
        let number = request.param("number")?;
        let notes = validate_notes(request.json::<NotesBody>()?.notes)?;
        let changes = db::execute(
            "UPDATE members SET notes = ?2 WHERE number = ?1",
            params![number, &notes],
        )?;
        if changes.rows_affected == 0 {
            return Err(member_not_found(number));
        }
        Ok(Response::json(
            200,
            &json!({ "number": number, "notes": notes }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("Ada"), "Ada");
        assert_eq!(csv_field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn unknown_routes_and_methods_are_refused_before_any_database_work() {
        let router = router();
        let response = router.handle(Request::new("GET", "/nope", "", vec![], vec![]));
        assert_eq!(response.status(), 404);
        let response = router.handle(Request::new("POST", "/members/M-1", "", vec![], vec![]));
        assert_eq!(response.status(), 405);
    }

    #[test]
    fn bad_list_filters_are_bad_requests() {
        let router = router();
        for query in ["status=gone", "limit=0", "limit=1001", "offset=-1"] {
            let response = router.handle(Request::new("GET", "/members", query, vec![], vec![]));
            assert_eq!(response.status(), 400, "{query}");
        }
    }

    #[test]
    fn malformed_and_misshapen_bodies_are_400_and_422() {
        let router = router();
        let post = |body: &str| {
            router.handle(Request::new(
                "POST",
                "/members",
                "",
                vec![],
                body.as_bytes().to_vec(),
            ))
        };
        assert_eq!(post("{").status(), 400);
        assert_eq!(post(r#"{"email":"a@b.c"}"#).status(), 422);
        assert_eq!(post(r#"{"name":"","joined_on":"yesterday"}"#).status(), 422);
    }
}
