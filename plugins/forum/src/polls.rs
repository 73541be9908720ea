//! Polls (plus): one per thread, single or multiple choice, an optional
//! closing time. One ballot per member is the table's UNIQUE constraint
//! (`ballots (poll_id, member_number)`): the module does not look first,
//! so parallel votes cannot slip past a check.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::{Problem, Request, Response, db, entitlements, params};

use crate::forums;
use crate::moderation;
use crate::page;
use crate::threads;
use crate::who::Who;

fn no_poll() -> Problem {
    Problem::new(
        404,
        "https://souk.dev/problems/forum/no-such-poll",
        "No poll in this thread",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPoll {
    question: String,
    options: Vec<String>,
    #[serde(default)]
    multiple: bool,
    closes_in_seconds: Option<i64>,
}

/// `POST /threads/{id}/poll` (member, plus): the thread's author or a
/// moderator adds its poll; takes one `max_polls`; 409 when it has one.
pub fn create(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = threads::visible(&who, request, "id")?;
    let new: NewPoll = request.json()?;
    let question = new.question.trim();
    if question.is_empty() || question.chars().count() > 300 {
        return Err(Problem::unprocessable(
            "`question` must be 1 to 300 characters",
        ));
    }
    let options: Vec<&str> = new.options.iter().map(|o| o.trim()).collect();
    if !(2..=20).contains(&options.len())
        || options
            .iter()
            .any(|o| o.is_empty() || o.chars().count() > 200)
    {
        return Err(Problem::unprocessable(
            "`options` must be 2 to 20 labels of 1 to 200 characters",
        ));
    }
    if let Some(seconds) = new.closes_in_seconds
        && !(1..=31_536_000).contains(&seconds)
    {
        return Err(Problem::unprocessable(
            "`closes_in_seconds` must be from 1 to 31536000 (a year)",
        ));
    }
    let (author,): (String,) = db::query_one(
        "SELECT author_user FROM threads WHERE id = ?1",
        params![thread.id],
    )?;
    if author != who.id && !moderation::is_moderator(&who, forum.id)? {
        return Err(Problem::from_status(403)
            .with_detail("only the thread's author or a moderator adds a poll"));
    }
    forums::check_may_post(&who, &forum)?;
    let existing: Option<(i64,)> = db::query_optional(
        "SELECT id FROM polls WHERE thread_id = ?1",
        params![thread.id],
    )?;
    if existing.is_some() {
        return Err(Problem::conflict("this thread has a poll"));
    }
    entitlements::consume("max_polls", 1)?;
    let changes = db::execute(
        "INSERT INTO polls (thread_id, question, multiple, closes_at, created_at) \
         VALUES (?1, ?2, ?3, CASE WHEN ?4 IS NULL THEN NULL ELSE ?5 + ?4 END, ?5)",
        params![
            thread.id,
            question,
            new.multiple,
            new.closes_in_seconds,
            crate::clock::now()
        ],
    )?;
    let poll = changes.last_insert_id.unwrap_or_default();
    for (position, label) in options.iter().enumerate() {
        db::execute(
            "INSERT INTO poll_options (poll_id, label, position) VALUES (?1, ?2, ?3)",
            params![poll, *label, position as i64],
        )?;
    }
    Ok(Response::json(
        201,
        &json!({ "poll": results(&who, thread.id)? }),
    ))
}

/// The poll of thread `thread` with its counts, as `who` sees it.
fn results(who: &Who, thread: i64) -> Result<serde_json::Value, Problem> {
    let poll = page::objects(
        "SELECT id, question, multiple, \
         CASE WHEN closes_at IS NULL THEN NULL \
         ELSE strftime('%Y-%m-%dT%H:%M:%SZ', closes_at, 'unixepoch') END AS closes_at, \
         closes_at IS NOT NULL AND closes_at <= ?2 AS closed \
         FROM polls WHERE thread_id = ?1",
        params![thread, crate::clock::now()],
        &["multiple", "closed"],
    )?;
    let mut poll = poll.into_iter().next().ok_or_else(no_poll)?;
    let id = poll["id"].as_i64().unwrap_or_default();
    let options: Vec<(i64, String, i64)> = db::query_as(
        "SELECT o.id, o.label, (SELECT count(*) FROM ballot_choices c WHERE c.option_id = o.id) \
         FROM poll_options o WHERE o.poll_id = ?1 ORDER BY o.position",
        params![id],
    )?;
    let (voters,): (i64,) = db::query_one(
        "SELECT count(*) FROM ballots WHERE poll_id = ?1",
        params![id],
    )?;
    let mine: Vec<(i64,)> = match who.active_number() {
        Some(number) => db::query_as(
            "SELECT c.option_id FROM ballots b JOIN ballot_choices c ON c.ballot_id = b.id \
             WHERE b.poll_id = ?1 AND b.member_number = ?2 ORDER BY c.option_id",
            params![id, number],
        )?,
        None => Vec::new(),
    };
    poll["voters"] = json!(voters);
    poll["options"] = json!(
        options
            .iter()
            .map(|(id, label, votes)| json!({"id": id, "label": label, "votes": votes}))
            .collect::<Vec<_>>()
    );
    poll["my_vote"] = json!(mine.iter().map(|(id,)| *id).collect::<Vec<_>>());
    Ok(poll)
}

/// `GET /threads/{id}/poll` (public, plus).
pub fn show(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, _) = threads::visible(&who, request, "id")?;
    Ok(Response::json(
        200,
        &json!({ "poll": results(&who, thread.id)? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    options: Vec<i64>,
}

/// `POST /threads/{id}/poll/votes` (member, plus): `{"options": [ids]}`
/// (exactly one unless the poll is multiple choice) → 201 the results;
/// 409 for a second ballot or a closed poll.
pub fn vote(request: &Request) -> Result<Response, Problem> {
    let who = Who::current()?;
    let (thread, forum) = threads::visible(&who, request, "id")?;
    let vote: Vote = request.json()?;
    forums::check_may_post(&who, &forum)?;
    let Some(number) = who.active_number() else {
        return Err(Problem::from_status(403).with_detail("only members vote"));
    };
    let poll: Option<(i64, bool, bool)> = db::query_optional(
        "SELECT id, multiple, closes_at IS NOT NULL AND closes_at <= ?2 \
         FROM polls WHERE thread_id = ?1",
        params![thread.id, crate::clock::now()],
    )?;
    let (poll, multiple, closed) = poll.ok_or_else(no_poll)?;
    if closed {
        return Err(Problem::new(
            409,
            "https://souk.dev/problems/forum/poll-closed",
            "Poll closed",
        ));
    }
    let mut chosen = vote.options.clone();
    chosen.sort_unstable();
    chosen.dedup();
    if chosen.is_empty() || (!multiple && chosen.len() != 1) {
        return Err(Problem::unprocessable(if multiple {
            "choose at least one option"
        } else {
            "choose exactly one option"
        }));
    }
    for option in &chosen {
        let found: Option<(i64,)> = db::query_optional(
            "SELECT id FROM poll_options WHERE id = ?1 AND poll_id = ?2",
            params![*option, poll],
        )?;
        if found.is_none() {
            return Err(Problem::unprocessable(format!(
                "option {option} is not in this poll"
            )));
        }
    }
    let ballot = match db::execute(
        "INSERT INTO ballots (poll_id, member_number, created_at) VALUES (?1, ?2, ?3)",
        params![poll, number, crate::clock::now()],
    ) {
        Ok(changes) => changes.last_insert_id.unwrap_or_default(),
        Err(error) if error.is_constraint() => {
            return Err(Problem::new(
                409,
                "https://souk.dev/problems/forum/already-voted",
                "Already voted",
            )
            .with_detail("one vote per member"));
        }
        Err(error) => return Err(error.into()),
    };
    for option in chosen {
        db::execute(
            "INSERT INTO ballot_choices (ballot_id, option_id) VALUES (?1, ?2)",
            params![ballot, option],
        )?;
    }
    Ok(Response::json(
        201,
        &json!({ "poll": results(&who, thread.id)? }),
    ))
}
