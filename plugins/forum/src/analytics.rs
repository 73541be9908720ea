//! Analytics (community): posts and active members per day, the busiest
//! threads, and how long threads wait for their first reply, as JSON for
//! charts. Deleted posts count (they were written); deleted threads do
//! not appear among the busiest.

use serde_json::json;
use souk_sdk::{Problem, Request, Response, params};

use crate::page;

/// `GET /analytics[?days=30]` (admin, community): the last `days` days
/// (1 to 365, by UTC day).
pub fn show(request: &Request) -> Result<Response, Problem> {
    let days: i64 = match request.query("days") {
        None => 30,
        Some(text) => match text.parse() {
            Ok(n) if (1..=365).contains(&n) => n,
            _ => {
                return Err(Problem::bad_request(
                    "`days` must be a number from 1 to 365",
                ));
            }
        },
    };
    // The first second of the first day counted, by the module's clock.
    let now = crate::clock::now();
    let since = "(?2 - (?1 - 1) * 86400)";
    let today = now - now.rem_euclid(86_400);
    let per_day = page::objects(
        &format!(
            "SELECT date(created_at, 'unixepoch') AS day, count(*) AS posts, \
             count(DISTINCT coalesce(author_number, author_user)) AS active_members \
             FROM posts WHERE created_at >= {since} GROUP BY day ORDER BY day"
        ),
        params![days, today],
        &[],
    )?;
    let busiest = page::objects(
        &format!(
            "SELECT t.id, t.title, count(p.id) AS posts FROM threads t \
             JOIN posts p ON p.thread_id = t.id \
             WHERE t.deleted_at IS NULL AND p.created_at >= {since} \
             GROUP BY t.id ORDER BY posts DESC, t.id LIMIT 10"
        ),
        params![days, today],
        &[],
    )?;
    let waits = page::objects(
        &format!(
            "SELECT t.id, (SELECT min(p.created_at) FROM posts p WHERE p.thread_id = t.id \
             AND p.opening = 0 AND p.author_user <> t.author_user) - t.created_at AS wait \
             FROM threads t WHERE t.deleted_at IS NULL AND t.created_at >= {since}"
        ),
        params![days, today],
        &[],
    )?;
    let mut answered: Vec<i64> = waits.iter().filter_map(|w| w["wait"].as_i64()).collect();
    answered.sort_unstable();
    let unanswered = waits.len() - answered.len();
    let median = median(&answered);
    let mean = if answered.is_empty() {
        None
    } else {
        Some(answered.iter().sum::<i64>() / answered.len() as i64)
    };
    Ok(Response::json(
        200,
        &json!({
            "days": days,
            "per_day": per_day,
            "busiest_threads": busiest,
            "response_times": {
                "threads": waits.len(),
                "answered": answered.len(),
                "unanswered": unanswered,
                "median_first_reply_seconds": median,
                "mean_first_reply_seconds": mean,
            },
        }),
    ))
}

/// The median of sorted `values` (the lower middle for an even count).
fn median(values: &[i64]) -> Option<i64> {
    if values.is_empty() {
        None
    } else {
        Some(values[(values.len() - 1) / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_sorted_values() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[1, 2, 9]), Some(2));
        assert_eq!(median(&[1, 2, 3, 9]), Some(2));
    }
}
