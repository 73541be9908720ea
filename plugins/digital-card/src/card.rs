//! Cards as stored and as returned, the rules their fields follow, and the
//! problem documents a client gets when it breaks them.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::Problem;
use souk_sdk::db::{DecodeError, FromRow, Row};

use crate::dates::{Day, format_instant};

/// Longest card or member number, in characters.
const MAX_NUMBER_LEN: usize = 32;
/// Longest revocation reason, in characters.
const MAX_REASON_LEN: usize = 200;
/// Longest validity a card may be issued or renewed for, in days.
pub const MAX_VALID_DAYS: i64 = 3660;

/// Problem type URIs of this module.
pub mod problems {
    /// A field of the body breaks its rule.
    pub const INVALID: &str = "https://souk.dev/problems/digital-card/invalid-card";
    /// No card with that number.
    pub const NOT_FOUND: &str = "https://souk.dev/problems/digital-card/card-not-found";
    /// The card number is taken.
    pub const DUPLICATE: &str = "https://souk.dev/problems/digital-card/duplicate-card-number";
    /// The member already has an active card.
    pub const ACTIVE_CARD: &str = "https://souk.dev/problems/digital-card/member-has-active-card";
    /// The card's status does not allow the change.
    pub const WRONG_STATUS: &str = "https://souk.dev/problems/digital-card/wrong-card-status";
    /// The settings lack what the request needs.
    pub const NOT_CONFIGURED: &str = "https://souk.dev/problems/digital-card/not-configured";
}

/// Where a card stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    /// Valid until its expiry date.
    Active,
    /// Past its expiry date (marked by the daily schedule).
    Expired,
    /// Withdrawn, with a reason.
    Revoked,
}

impl CardStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Expired => "expired",
            CardStatus::Revoked => "revoked",
        }
    }

    /// Parses `active`, `expired` or `revoked`.
    ///
    /// # Errors
    ///
    /// A message listing the valid statuses.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(CardStatus::Active),
            "expired" => Ok(CardStatus::Expired),
            "revoked" => Ok(CardStatus::Revoked),
            other => Err(format!(
                "`{other}` is not a card status; use active, expired or revoked"
            )),
        }
    }
}

/// Checks a card or member number: 1 to 32 ASCII letters, digits, `-`,
/// `_` or `.`, starting with a letter or digit.
///
/// # Errors
///
/// A message saying which rule the text breaks.
pub fn check_number(text: &str) -> Result<(), String> {
    if text.is_empty() || text.chars().count() > MAX_NUMBER_LEN {
        return Err(format!("must be 1 to {MAX_NUMBER_LEN} characters long"));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".to_owned());
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'".to_owned());
    }
    Ok(())
}

/// A card as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Row id (internal).
    pub id: i64,
    /// The card number, unique per tenant.
    pub number: String,
    /// The holder's member number (Membership).
    pub member_number: String,
    /// Where the card stands.
    pub status: String,
    /// Why it is expired or revoked.
    pub status_reason: Option<String>,
    /// `YYYY-MM-DD`.
    pub issued_on: String,
    /// `YYYY-MM-DD`: the last day it is valid.
    pub expires_on: String,
    /// The template's slug.
    pub template: String,
    /// The photo's file id, if any.
    pub photo_file_id: Option<String>,
    /// The verification token (never the card number).
    pub token: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// The columns [`Card::from_row`] reads, for SELECT lists.
pub const CARD_COLUMNS: &str = "id, number, member_number, status, status_reason, issued_on, \
                                expires_on, template, photo_file_id, token, created_at";

impl FromRow for Card {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: row.get("id")?,
            number: row.get("number")?,
            member_number: row.get("member_number")?,
            status: row.get("status")?,
            status_reason: row.get("status_reason")?,
            issued_on: row.get("issued_on")?,
            expires_on: row.get("expires_on")?,
            template: row.get("template")?,
            photo_file_id: row.get("photo_file_id")?,
            token: row.get("token")?,
            created_at: row.get("created_at")?,
        })
    }
}

impl Card {
    /// The card as the API returns it; `verify_base_url` makes the
    /// verification URL (absent until the tenant sets it).
    pub fn to_json(&self, verify_base_url: Option<&str>) -> serde_json::Value {
        json!({
            "number": self.number,
            "member": self.member_number,
            "status": self.status,
            "status_reason": self.status_reason,
            "issued_on": self.issued_on,
            "expires_on": self.expires_on,
            "template": self.template,
            "has_photo": self.photo_file_id.is_some(),
            "verification_url": verify_base_url.map(|base| verification_url(base, &self.token)),
            "created_at": format_instant(self.created_at),
        })
    }
}

/// The public verification URL of a token.
pub fn verification_url(base: &str, token: &str) -> String {
    format!("{base}/v/{token}")
}

/// One invalid field.
#[derive(Debug, Serialize)]
pub struct FieldError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Collects field errors; `finish` turns any into one 422 problem.
#[derive(Debug, Default)]
pub struct FieldCheck(Vec<FieldError>);

impl FieldCheck {
    /// Keeps `value` when it is valid, records the error otherwise.
    pub fn field<T>(&mut self, field: &'static str, value: Result<T, String>) -> Option<T> {
        match value {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError { field, message });
                None
            }
        }
    }

    /// Records an error for `field`.
    pub fn fail(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push(FieldError {
            field,
            message: message.into(),
        });
    }

    /// `Ok` when every field was valid.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn finish(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid(self.0))
        }
    }
}

/// A 422 problem listing invalid fields.
pub fn invalid(errors: Vec<FieldError>) -> Problem {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Problem::new(422, problems::INVALID, "Invalid card")
        .with_detail(detail)
        .with_extension("errors", json!(errors))
}

/// The body of `POST /cards`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCard {
    /// The holder's member number.
    pub member: String,
    /// The card number; generated when absent.
    pub number: Option<String>,
    /// The template's slug; `classic` when absent.
    pub template: Option<String>,
    /// `YYYY-MM-DD`; today when absent.
    pub issued_on: Option<String>,
    /// `YYYY-MM-DD`; `issued_on` plus the tenant's `valid_days` when absent.
    pub expires_on: Option<String>,
    /// Custom field values by name (release 1.1.0).
    #[cfg(feature = "release-1-1")]
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A validated new card.
#[derive(Debug)]
pub struct CardRequest {
    /// The holder's member number.
    pub member: String,
    /// The card number, if given.
    pub number: Option<String>,
    /// The template's slug.
    pub template: String,
    /// Issue day.
    pub issued_on: Day,
    /// Expiry day (after the issue day).
    pub expires_on: Day,
}

impl NewCard {
    /// Checks every field; `valid_days` is the tenant's default validity.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn validate(self, today: Day, valid_days: i64) -> Result<CardRequest, Problem> {
        let mut check = FieldCheck::default();
        let member = check.field("member", check_number(&self.member).map(|()| self.member));
        let number = match self.number {
            Some(number) => check
                .field("number", check_number(&number).map(|()| number))
                .map(Some),
            None => Some(None),
        };
        let template = self.template.unwrap_or_else(|| "classic".to_owned());
        let issued_on = match self.issued_on {
            Some(text) => check.field("issued_on", Day::parse(&text)),
            None => Some(today),
        };
        let expires_on = match (self.expires_on, issued_on) {
            (Some(text), _) => check.field("expires_on", Day::parse(&text)),
            (None, Some(issued)) => Some(issued.plus(valid_days)),
            (None, None) => None,
        };
        if let (Some(issued), Some(expires)) = (issued_on, expires_on) {
            if expires <= issued {
                check.fail("expires_on", "must be after issued_on");
            } else if expires.0 - issued.0 > MAX_VALID_DAYS {
                check.fail(
                    "expires_on",
                    format!("a card is valid for at most {MAX_VALID_DAYS} days"),
                );
            }
        }
        check.finish()?;
        match (member, number, issued_on, expires_on) {
            (Some(member), Some(number), Some(issued_on), Some(expires_on)) => Ok(CardRequest {
                member,
                number,
                template,
                issued_on,
                expires_on,
            }),
            _ => Err(invalid(Vec::new())),
        }
    }
}

/// The body of `POST /cards/{number}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Why the card is revoked (1 to 200 characters).
    pub reason: String,
}

impl Revocation {
    /// The trimmed reason.
    ///
    /// # Errors
    ///
    /// A 422 problem when it is empty, too long or has control characters.
    pub fn reason(self) -> Result<String, Problem> {
        let reason = self.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON_LEN
            || reason.chars().any(char::is_control)
        {
            return Err(invalid(vec![FieldError {
                field: "reason",
                message: format!(
                    "must be 1 to {MAX_REASON_LEN} characters without control characters"
                ),
            }]));
        }
        Ok(reason.to_owned())
    }
}

/// The body of `POST /cards/{number}/renew`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// `YYYY-MM-DD`; today plus the tenant's `valid_days` when absent.
    pub expires_on: Option<String>,
    /// Another template's slug for the card; its own when absent.
    #[serde(default)]
    pub template: Option<String>,
}

impl Renewal {
    /// The new expiry day.
    ///
    /// # Errors
    ///
    /// A 422 problem when it is not a date after today or too far away.
    pub fn expires_on(self, today: Day, valid_days: i64) -> Result<Day, Problem> {
        let mut check = FieldCheck::default();
        let day = match self.expires_on {
            Some(text) => check.field("expires_on", Day::parse(&text)),
            None => Some(today.plus(valid_days)),
        };
        if let Some(day) = day {
            if day <= today {
                check.fail("expires_on", "must be after today");
            } else if day.0 - today.0 > MAX_VALID_DAYS {
                check.fail(
                    "expires_on",
                    format!("a card is valid for at most {MAX_VALID_DAYS} days"),
                );
            }
        }
        check.finish()?;
        day.ok_or_else(|| invalid(Vec::new()))
    }
}

/// 404 for a card number.
pub fn card_not_found(number: &str) -> Problem {
    Problem::new(404, problems::NOT_FOUND, "Card not found")
        .with_detail(format!("no card has number `{number}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_card(json: &str) -> NewCard {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_card_defaults_to_today_and_the_tenants_validity() {
        let today = Day::parse("2026-03-01").unwrap();
        let card = new_card(r#"{"member":"M-1"}"#)
            .validate(today, 365)
            .unwrap();
        assert_eq!(card.issued_on, today);
        assert_eq!(card.expires_on.format(), "2027-03-01");
        assert_eq!(card.template, "classic");
        assert!(card.number.is_none());
    }

    #[test]
    fn invalid_fields_are_all_named() {
        let today = Day::parse("2026-03-01").unwrap();
        let problem = new_card(
            r#"{"member":"-x","number":"a b","issued_on":"2026-03-05","expires_on":"2026-03-04"}"#,
        )
        .validate(today, 365)
        .unwrap_err();
        assert_eq!(problem.status(), 422);
        let detail = problem.detail().unwrap();
        for field in ["member", "number", "expires_on"] {
            assert!(detail.contains(field), "{detail}");
        }
        let problem = new_card(r#"{"member":"M-1","expires_on":"2040-01-01"}"#)
            .validate(today, 365)
            .unwrap_err();
        assert!(problem.detail().unwrap().contains("at most"));
    }

    #[test]
    fn reasons_and_renewals_are_checked() {
        assert!(
            Revocation {
                reason: "  lost ".into()
            }
            .reason()
            .is_ok()
        );
        assert!(Revocation { reason: " ".into() }.reason().is_err());
        assert!(
            Revocation {
                reason: "a\u{0}b".into()
            }
            .reason()
            .is_err()
        );
        let today = Day::parse("2026-03-01").unwrap();
        assert_eq!(
            Renewal::default().expires_on(today, 30).unwrap().format(),
            "2026-03-31"
        );
        let past = Renewal {
            expires_on: Some("2026-03-01".into()),
            template: None,
        };
        assert!(past.expires_on(today, 30).is_err());
    }
}
