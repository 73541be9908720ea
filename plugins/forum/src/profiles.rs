//! Member profiles: name, number, status and join date from Membership,
//! post count from the forum. A member who left (or was removed) is shown
//! as such; their posts stay.

use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, params};

use crate::who::Who;

/// The profile of member `number`, or `None` when Membership does not know
/// the number and it never posted.
///
/// # Errors
///
/// Database errors.
pub fn profile(number: &str) -> Result<Option<serde_json::Value>, Problem> {
    let member: Option<(String, String, String, Option<String>)> = db::query_optional(
        "SELECT m.name, m.status, m.joined_on, \
         (SELECT strftime('%Y-%m-%dT%H:%M:%SZ', d.left_at, 'unixepoch') FROM departed d \
          WHERE d.number = m.number) FROM membership.members m WHERE m.number = ?1",
        params![number],
    )?;
    let (posts, last_name): (i64, Option<String>) = db::query_one(
        "SELECT count(*), max(author_name) FROM posts \
         WHERE author_number = ?1 AND deleted_at IS NULL",
        params![number],
    )?;
    Ok(match member {
        Some((name, status, joined, left_at)) => {
            let left = status == "left" || left_at.is_some();
            Some(json!({
                "number": number,
                "name": name,
                "joined": joined,
                "left": left,
                "left_at": left_at,
                "posts": posts,
            }))
        }
        None if posts > 0 => Some(json!({
            "number": number,
            "name": last_name,
            "joined": null,
            "left": true,
            "left_at": null,
            "posts": posts,
        })),
        None => None,
    })
}

/// `GET /members/{number}` (public).
pub fn show(request: &Request) -> Result<Response, Problem> {
    let number = request.param("number")?;
    match profile(number)? {
        Some(profile) => Ok(Response::json(200, &json!({ "profile": profile }))),
        None => Err(Problem::new(
            404,
            "https://souk.dev/problems/forum/no-such-member",
            "No such member",
        )),
    }
}

/// `GET /me` (member): who the forum takes the caller for, and their
/// profile when they are a member.
pub fn me(_request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let profile = match &who.member {
        Some((number, _)) => profile(number)?,
        None => None,
    };
    Ok(Response::json(
        200,
        &json!({
            "id": who.id,
            "name": who.name,
            "admin": who.admin,
            "member_number": who.member.as_ref().map(|(n, _)| n),
            "may_post": who.author().is_ok(),
            "profile": profile,
        }),
    ))
}
