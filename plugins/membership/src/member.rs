//! Members, the rules their fields follow, and the problem documents a
//! client gets when it breaks them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use souk_sdk::Problem;
use souk_sdk::db::{DecodeError, FromRow, FromValue, Row, Value, ValueError};

/// Longest member number, in characters.
const MAX_NUMBER_LEN: usize = 32;
/// Longest name, in characters.
const MAX_NAME_LEN: usize = 200;
/// Longest email address (RFC 5321 path limit).
const MAX_EMAIL_LEN: usize = 254;
/// Longest notes text, in characters.
#[cfg(feature = "member-notes")]
pub const MAX_NOTES_LEN: usize = 4000;

/// Where a member stands with the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// A current member.
    Active,
    /// A member whose rights are on hold.
    Suspended,
    /// A former member, kept for the record.
    Left,
}

impl MemberStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Suspended => "suspended",
            MemberStatus::Left => "left",
        }
    }

    /// Parses `active`, `suspended` or `left`.
    ///
    /// # Errors
    ///
    /// A message listing the valid statuses.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(MemberStatus::Active),
            "suspended" => Ok(MemberStatus::Suspended),
            "left" => Ok(MemberStatus::Left),
            other => Err(format!(
                "`{other}` is not a member status; use active, suspended or left"
            )),
        }
    }
}

impl FromValue for MemberStatus {
    fn from_value(value: &Value) -> Result<Self, ValueError> {
        let text = String::from_value(value)?;
        MemberStatus::parse(&text).map_err(|reason| ValueError::Invalid {
            expected: "member status",
            reason,
        })
    }
}

/// A member number: 1 to 32 ASCII letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit. Unique within a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberNumber(String);

impl MemberNumber {
    /// Checks a member number.
    ///
    /// # Errors
    ///
    /// A message saying which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
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
        Ok(Self(text.to_owned()))
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a member's name and returns it trimmed.
fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters long"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(name.to_owned())
}

/// Checks an email address (the shape `local@domain.tld`, not
/// deliverability) and returns it trimmed.
fn parse_email(text: &str) -> Result<String, String> {
    let email = text.trim();
    if email.is_empty() || email.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "must be 1 to {MAX_EMAIL_LEN} bytes long; send null to have no email"
        ));
    }
    let shape_error = || format!("`{email}` is not an email address");
    let (local, domain) = email.split_once('@').ok_or_else(shape_error)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if local.is_empty()
        || domain.contains('@')
        || !domain_ok
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(shape_error());
    }
    Ok(email.to_owned())
}

/// Checks a calendar date written `YYYY-MM-DD`.
fn parse_date(text: &str) -> Result<String, String> {
    let shape_error = || format!("`{text}` is not a date written YYYY-MM-DD");
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(shape_error());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let digits = text.get(range).ok_or_else(shape_error)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(shape_error());
        }
        digits.parse().map_err(|_| shape_error())
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("`{text}` has no month {month}")),
    };
    if year == 0 || day == 0 || day > days_in_month {
        return Err(format!("`{text}` is not a day of the calendar"));
    }
    Ok(text.to_owned())
}

/// A member as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The member number.
    pub number: String,
    /// The full name.
    pub name: String,
    /// The contact email, if any.
    pub email: Option<String>,
    /// Where the member stands.
    pub status: MemberStatus,
    /// The day the member joined, `YYYY-MM-DD`.
    pub joined_on: String,
}

/// The columns [`Member::from_row`] reads, for SELECT lists.
pub const MEMBER_COLUMNS: &str = "number, name, email, status, joined_on";

impl FromRow for Member {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            number: row.get("number")?,
            name: row.get("name")?,
            email: row.get("email")?,
            status: row.get("status")?,
            joined_on: row.get("joined_on")?,
        })
    }
}

/// Validated member fields, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFields {
    /// The trimmed name.
    pub name: String,
    /// The trimmed email, if any.
    pub email: Option<String>,
    /// The status.
    pub status: MemberStatus,
    /// The join date; `None` means today (new members only).
    pub joined_on: Option<String>,
}

/// The body of `POST /members`. Without `number`, the next free generated
/// number is used; without `status`, the member is active; without
/// `joined_on`, the member joined today.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    number: Option<String>,
    name: String,
    email: Option<String>,
    status: Option<String>,
    joined_on: Option<String>,
}

impl NewMember {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn validate(self) -> Result<(Option<MemberNumber>, MemberFields), Problem> {
        let mut check = FieldCheck::default();
        let number = self
            .number
            .and_then(|number| check.field("number", MemberNumber::parse(&number)));
        let name = check.field("name", parse_name(&self.name));
        let email = self
            .email
            .and_then(|email| check.field("email", parse_email(&email)));
        let status = match self.status {
            Some(status) => check.field("status", MemberStatus::parse(&status)),
            None => Some(MemberStatus::Active),
        };
        let joined_on = self
            .joined_on
            .and_then(|date| check.field("joined_on", parse_date(&date)));
        check.finish()?;
        match (name, status) {
            (Some(name), Some(status)) => Ok((
                number,
                MemberFields {
                    name,
                    email,
                    status,
                    joined_on,
                },
            )),
            _ => Err(invalid_member(Vec::new())),
        }
    }
}

/// The body of `PUT /members/{number}`: every field of the member. A
/// `number` may be included (as returned by GET) but must be the one in the
/// path: member numbers do not change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberReplacement {
    number: Option<String>,
    name: String,
    email: Option<String>,
    status: String,
    joined_on: String,
}

impl MemberReplacement {
    /// Checks every field against the member number from the path.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn validate(self, number: &str) -> Result<MemberFields, Problem> {
        let mut check = FieldCheck::default();
        check.unchanged_number(self.number.as_deref(), number);
        let name = check.field("name", parse_name(&self.name));
        let email = self
            .email
            .and_then(|email| check.field("email", parse_email(&email)));
        let status = check.field("status", MemberStatus::parse(&self.status));
        let joined_on = check.field("joined_on", parse_date(&self.joined_on));
        check.finish()?;
        match (name, status, joined_on) {
            (Some(name), Some(status), Some(joined_on)) => Ok(MemberFields {
                name,
                email,
                status,
                joined_on: Some(joined_on),
            }),
            _ => Err(invalid_member(Vec::new())),
        }
    }
}

/// The body of `PATCH /members/{number}`: the fields to change. `"email":
/// null` removes the email; an absent field stays as it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    number: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    status: Option<String>,
    joined_on: Option<String>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl MemberPatch {
    /// Checks the changed fields and applies them to `current`.
    ///
    /// # Errors
    ///
    /// A 422 problem listing each invalid field.
    pub fn apply(self, current: Member) -> Result<MemberFields, Problem> {
        let mut check = FieldCheck::default();
        check.unchanged_number(self.number.as_deref(), &current.number);
        let name = match self.name {
            Some(name) => check.field("name", parse_name(&name)),
            None => Some(current.name),
        };
        let email = match self.email {
            Some(Some(email)) => check.field("email", parse_email(&email)).map(Some),
            Some(None) => Some(None),
            None => Some(current.email),
        };
        let status = match self.status {
            Some(status) => check.field("status", MemberStatus::parse(&status)),
            None => Some(current.status),
        };
        let joined_on = match self.joined_on {
            Some(date) => check.field("joined_on", parse_date(&date)),
            None => Some(current.joined_on),
        };
        check.finish()?;
        match (name, email, status, joined_on) {
            (Some(name), Some(email), Some(status), Some(joined_on)) => Ok(MemberFields {
                name,
                email,
                status,
                joined_on: Some(joined_on),
            }),
            _ => Err(invalid_member(Vec::new())),
        }
    }
}

/// One field that failed validation, as listed in a 422 problem's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The JSON field name.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Collects field errors so a client learns about all of them at once.
#[derive(Debug, Default)]
struct FieldCheck {
    errors: Vec<FieldError>,
}

impl FieldCheck {
    fn field<T>(&mut self, field: &'static str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|message| self.errors.push(FieldError { field, message }))
            .ok()
    }

    fn unchanged_number(&mut self, given: Option<&str>, current: &str) {
        if let Some(given) = given
            && given != current
        {
            self.errors.push(FieldError {
                field: "number",
                message: format!(
                    "is `{given}` but the member is `{current}`; member numbers cannot change"
                ),
            });
        }
    }

    fn finish(self) -> Result<(), Problem> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(invalid_member(self.errors))
        }
    }
}

/// 422: the member data breaks a rule; `errors` lists each field.
pub fn invalid_member(errors: Vec<FieldError>) -> Problem {
    let detail = if errors.is_empty() {
        "the member data is invalid".to_owned()
    } else {
        errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Problem::new(
        422,
        "https://souk.dev/problems/membership/invalid-member",
        "Invalid member data",
    )
    .with_detail(detail)
    .with_extension("errors", serde_json::json!(errors))
}

/// 404: no member has this number.
pub fn member_not_found(number: &str) -> Problem {
    Problem::new(
        404,
        "https://souk.dev/problems/membership/member-not-found",
        "No such member",
    )
    .with_detail(format!("no member has the number `{number}`"))
    .with_extension("number", number.into())
}

/// 409: the member number belongs to another member already.
pub fn duplicate_number(number: &str) -> Problem {
    Problem::new(
        409,
        "https://souk.dev/problems/membership/duplicate-member-number",
        "Member number already taken",
    )
    .with_detail(format!(
        "a member with the number `{number}` exists; choose another number or leave it out to get the next free one"
    ))
    .with_extension("number", number.into())
}

/// Checks notes text.
///
/// # Errors
///
/// A 422 problem when the text is too long.
#[cfg(feature = "member-notes")]
pub fn validate_notes(notes: Option<String>) -> Result<Option<String>, Problem> {
    match notes {
        Some(text) if text.chars().count() > MAX_NOTES_LEN => {
            Err(invalid_member(vec![FieldError {
                field: "notes",
                message: format!("must be at most {MAX_NOTES_LEN} characters long"),
            }]))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_member(json: &str) -> NewMember {
        serde_json::from_str(json).expect("test body parses")
    }

    fn error_fields(problem: &Problem) -> Vec<String> {
        let document: serde_json::Value =
            serde_json::from_str(&problem.to_json()).expect("problem is JSON");
        document["errors"]
            .as_array()
            .expect("errors list")
            .iter()
            .map(|error| error["field"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn member_numbers_follow_the_documented_alphabet() {
        for valid in ["M-0001", "2024.17", "a_b", "7"] {
            assert!(MemberNumber::parse(valid).is_ok(), "{valid}");
        }
        for invalid in ["", "-1", "M 1", "M/1", "Ü1", &"9".repeat(33)] {
            assert!(MemberNumber::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(
            parse_email(" ada@example.org "),
            Ok("ada@example.org".into())
        );
        for invalid in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a@b@c.d",
            "a b@c.d",
            "a@.c",
            "a@c..d",
        ] {
            assert!(parse_email(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn dates_must_exist_on_the_calendar() {
        for valid in ["2024-02-29", "2000-02-29", "1999-12-31"] {
            assert_eq!(parse_date(valid), Ok(valid.to_owned()));
        }
        for invalid in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-04-31",
            "2024-1-01",
            "24-01-01",
            "2024/01/01",
            "0000-01-01",
            "2024-01-+1",
        ] {
            assert!(parse_date(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn a_new_member_defaults_to_active_and_today() {
        let (number, fields) = new_member(r#"{"name":" Ada Lovelace "}"#)
            .validate()
            .expect("valid member");
        assert_eq!(number, None);
        assert_eq!(
            fields,
            MemberFields {
                name: "Ada Lovelace".into(),
                email: None,
                status: MemberStatus::Active,
                joined_on: None,
            }
        );
    }

    #[test]
    fn every_invalid_field_of_a_new_member_is_reported() {
        let problem = new_member(
            r#"{"number":"M 1","name":"","email":"nope","status":"gone","joined_on":"2024-02-30"}"#,
        )
        .validate()
        .expect_err("all fields invalid");
        assert_eq!(problem.status(), 422);
        assert_eq!(
            error_fields(&problem),
            vec!["number", "name", "email", "status", "joined_on"]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed: Result<NewMember, _> = serde_json::from_str(r#"{"name":"Ada","nmae":"x"}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn replacing_a_member_cannot_change_its_number() {
        let body: MemberReplacement = serde_json::from_str(
            r#"{"number":"M-2","name":"Ada","status":"left","joined_on":"2020-01-01"}"#,
        )
        .expect("test body parses");
        let problem = body.validate("M-1").expect_err("number differs");
        assert_eq!(error_fields(&problem), vec!["number"]);
    }

    #[test]
    fn a_patch_keeps_absent_fields_and_clears_null_email() {
        let current = Member {
            number: "M-1".into(),
            name: "Ada".into(),
            email: Some("ada@example.org".into()),
            status: MemberStatus::Active,
            joined_on: "2020-01-01".into(),
        };
        let patch: MemberPatch =
            serde_json::from_str(r#"{"status":"suspended"}"#).expect("test body parses");
        let fields = patch.apply(current.clone()).expect("valid patch");
        assert_eq!(fields.email.as_deref(), Some("ada@example.org"));
        assert_eq!(fields.status, MemberStatus::Suspended);
        assert_eq!(fields.joined_on.as_deref(), Some("2020-01-01"));

        let patch: MemberPatch =
            serde_json::from_str(r#"{"email":null}"#).expect("test body parses");
        assert_eq!(patch.apply(current).expect("valid patch").email, None);
    }

    #[test]
    fn stored_statuses_decode_and_unknown_ones_are_reported() {
        assert_eq!(
            Value::Text("left".into()).decode::<MemberStatus>(),
            Ok(MemberStatus::Left)
        );
        assert!(matches!(
            Value::Text("gone".into()).decode::<MemberStatus>(),
            Err(ValueError::Invalid { .. })
        ));
    }
}
