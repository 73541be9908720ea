//! The tenant's settings: the organisation's name (on cards and public
//! pages), the verification base URL (what QR codes and share links
//! point at), whether a member may hold several active cards, and the
//! default validity.
//!
//! # The verification base URL
//!
//! A tenant may set `verify_base_url` explicitly (it wins). Without it the
//! module uses the public URL of its mount that the host tells every
//! request ([`Request::public_url`]); since release 1.1.0 each request
//! notes it in the settings row when it changed ([`note_public_url`],
//! migration `0005_public_url`), so jobs and schedules, which have no
//! request, link to the same place.

use serde::Deserialize;
use serde_json::json;
#[cfg(feature = "release-1-2")]
use souk_sdk::Migration;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Problem, Request, Response, params};

/// Release 1.1.0: the public URL of the module's mount as the host last
/// told it (`settings.public_url`), used when no `verify_base_url` is set.
#[cfg(feature = "release-1-2")]
pub const PUBLIC_URL_MIGRATION: Migration = Migration::new(
    "0005_public_url",
    "ALTER TABLE settings ADD COLUMN public_url TEXT",
    "ALTER TABLE settings DROP COLUMN public_url",
);

/// The columns of the settings row this build reads.
#[cfg(feature = "release-1-2")]
const COLUMNS: &str =
    "organisation_name, verify_base_url, public_url, allow_multiple_active, valid_days";
#[cfg(not(feature = "release-1-2"))]
const COLUMNS: &str = "organisation_name, verify_base_url, allow_multiple_active, valid_days";

use crate::card::{FieldCheck, MAX_VALID_DAYS, problems};

/// Longest organisation name, in characters.
const MAX_NAME_LEN: usize = 120;
/// Longest verification base URL, in bytes.
const MAX_URL_LEN: usize = 300;

/// The settings row.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shown on cards and public pages.
    pub organisation_name: String,
    /// Absolute URL under which this module is served to the public, e.g.
    /// `https://souk.example.org/t/acme/m/digital-card`, as the tenant set
    /// it.
    pub verify_base_url: Option<String>,
    /// The public URL of the module's mount as the host last told it
    /// (release 1.1.0; `None` before the first request that told it).
    pub public_url: Option<String>,
    /// Whether a member may hold more than one active card.
    pub allow_multiple_active: bool,
    /// Default validity of new and renewed cards, in days.
    pub valid_days: i64,
}

impl FromRow for Settings {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            organisation_name: row.get("organisation_name")?,
            verify_base_url: row.get("verify_base_url")?,
            #[cfg(feature = "release-1-2")]
            public_url: row.get("public_url")?,
            #[cfg(not(feature = "release-1-2"))]
            public_url: None,
            allow_multiple_active: row.get::<i64>("allow_multiple_active")? == 1,
            valid_days: row.get("valid_days")?,
        })
    }
}

impl Settings {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "organisation_name": self.organisation_name,
            "verify_base_url": self.verify_base_url,
            "public_url": self.public_url,
            "allow_multiple_active": self.allow_multiple_active,
            "valid_days": self.valid_days,
        })
    }

    /// The URL QR codes and share links point under: the tenant's
    /// `verify_base_url` when set, else the public URL the host told.
    pub fn verification_base(&self) -> Option<&str> {
        self.verify_base_url
            .as_deref()
            .or(self.public_url.as_deref())
    }

    /// [`Settings::verification_base`], or a 409 problem saying to set it.
    ///
    /// # Errors
    ///
    /// 409 when the tenant has not set `verify_base_url` and no request
    /// has told the module its public URL yet.
    pub fn base_url(&self) -> Result<&str, Problem> {
        self.verification_base().ok_or_else(|| {
            Problem::new(409, problems::NOT_CONFIGURED, "Verification URL not set").with_detail(
                "set `verify_base_url` with PUT /settings (the absolute URL this module is \
                 served under, e.g. https://souk.example.org/t/acme/m/digital-card) first",
            )
        })
    }
}

/// Notes the public URL the host told this request in the settings row,
/// when it differs from the one noted (a read first: most requests change
/// nothing and take no write lock). Run before every route. A URL that is
/// not a plain base URL is ignored.
///
/// # Errors
///
/// A database problem.
pub fn note_public_url(request: &Request) -> Result<(), Problem> {
    #[cfg(feature = "release-1-2")]
    if let Some(url) = request
        .public_url()
        .and_then(|url| parse_base_url(url).ok())
    {
        let noted: Option<(Option<String>,)> =
            db::query_optional("SELECT public_url FROM settings WHERE id = 1", params![])?;
        if let Some((noted,)) = noted
            && noted.as_deref() != Some(url.as_str())
        {
            db::execute(
                "UPDATE settings SET public_url = ?1 WHERE id = 1",
                params![&url],
            )?;
        }
    }
    #[cfg(not(feature = "release-1-2"))]
    let _ = request;
    Ok(())
}

/// The settings.
///
/// # Errors
///
/// A 500 problem when the install seed is missing.
pub fn load() -> Result<Settings, Problem> {
    db::query_optional(
        &format!("SELECT {COLUMNS} FROM settings WHERE id = 1"),
        params![],
    )?
    .ok_or_else(|| Problem::internal("the settings row is missing (the install seed did not run)"))
}

/// `GET /settings`.
pub fn show(_request: &Request) -> Result<Response, Problem> {
    Ok(Response::json(200, &load()?.to_json()))
}

/// The body of `PUT /settings`: every field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    organisation_name: String,
    verify_base_url: Option<String>,
    allow_multiple_active: bool,
    valid_days: i64,
}

/// `PUT /settings`.
pub fn replace(request: &Request) -> Result<Response, Problem> {
    let body: SettingsBody = request.json()?;
    let mut check = FieldCheck::default();
    let name = body.organisation_name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        check.fail(
            "organisation_name",
            format!("must be 1 to {MAX_NAME_LEN} characters without control characters"),
        );
    }
    let url = body
        .verify_base_url
        .and_then(|url| check.field("verify_base_url", parse_base_url(&url)));
    if !(1..=MAX_VALID_DAYS).contains(&body.valid_days) {
        check.fail("valid_days", format!("must be 1 to {MAX_VALID_DAYS}"));
    }
    check.finish()?;
    db::execute(
        "UPDATE settings SET organisation_name = ?1, verify_base_url = ?2, \
         allow_multiple_active = ?3, valid_days = ?4 WHERE id = 1",
        params![
            &name,
            &url,
            i64::from(body.allow_multiple_active),
            body.valid_days
        ],
    )?;
    show(request)
}

/// Checks an absolute `http(s)` URL without query, fragment, spaces or
/// quotes, and drops a trailing `/`.
fn parse_base_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if url.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} bytes"));
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("must name a host".to_owned());
    }
    if url
        .chars()
        .any(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#' | '"' | '\'' | '<' | '>' | '\\'))
    {
        return Err("must be a plain URL without query, fragment, spaces or quotes".to_owned());
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            parse_base_url("https://souk.example.org/t/acme/m/digital-card/").unwrap(),
            "https://souk.example.org/t/acme/m/digital-card"
        );
        assert!(parse_base_url("http://127.0.0.1:8080/t/a/m/digital-card").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://a b",
            "https://x/?q=1",
            "https://x/\"><script>",
            "javascript:alert(1)",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }
}
