//! Who is calling, as the forum sees it, and what each audience admits.
//!
//! The host names the caller (`context`); the forum links a signed-in user
//! to their Membership member by the member number the host passes, and
//! reads the member's status from `membership.members` on every call, so a
//! status change counts at once. A member Membership reported as having
//! left (`member_left`, recorded in `departed`) never posts again under
//! that number.

use serde::Serialize;
use souk_sdk::{CallerKind, Problem, context, db, params};

/// A Membership member's status, as far as the forum cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// May read and post where the audience admits members.
    Active,
    /// Reads public forums, and forums opened to `status:suspended`.
    Suspended,
    /// Reads public forums only.
    Left,
}

impl MemberStatus {
    fn parse(text: &str) -> MemberStatus {
        match text {
            "active" => MemberStatus::Active,
            "suspended" => MemberStatus::Suspended,
            _ => MemberStatus::Left,
        }
    }
}

/// The caller, resolved once per request.
#[derive(Debug, Clone)]
pub struct Who {
    /// The caller's id from the host (user id, token id, `anonymous`).
    pub id: String,
    /// The caller's display name from the host.
    pub name: String,
    /// Whether the caller administers the tenant.
    pub admin: bool,
    /// The linked member: number and status; `None` without a link, or
    /// when the number names no member.
    pub member: Option<(String, MemberStatus)>,
}

impl Who {
    /// The caller of this request.
    ///
    /// # Errors
    ///
    /// A database error reading the member.
    pub fn current() -> Result<Who, Problem> {
        let caller = context().caller;
        let admin = caller.is_admin();
        let member = match (&caller.kind, &caller.member_number) {
            (CallerKind::User, Some(number)) => Some((number.clone(), member_status(number)?)),
            _ => None,
        };
        Ok(Who {
            id: caller.id,
            name: caller.name,
            admin,
            member,
        })
    }

    /// The member number of an active member, if the caller is one.
    pub fn active_number(&self) -> Option<&str> {
        match &self.member {
            Some((number, MemberStatus::Active)) => Some(number),
            _ => None,
        }
    }

    /// Whether `audience` admits the caller.
    pub fn admitted(&self, audience: &Audience) -> bool {
        if self.admin {
            return true;
        }
        let status = self.member.as_ref().map(|(_, status)| *status);
        match audience {
            Audience::Public => true,
            Audience::Members => status == Some(MemberStatus::Active),
            Audience::Suspended => status == Some(MemberStatus::Suspended),
            Audience::Admins => false,
        }
    }

    /// The author this caller writes as: `(member number, user id, name)`,
    /// or 403 when the caller may not write at all (no linked active
    /// member, and not an administrator).
    ///
    /// # Errors
    ///
    /// 403 with a detail saying why.
    pub fn author(&self) -> Result<(Option<String>, String, String), Problem> {
        if let Some(number) = self.active_number() {
            return Ok((Some(number.to_owned()), self.id.clone(), self.name.clone()));
        }
        if self.admin {
            let number = self.member.as_ref().map(|(number, _)| number.clone());
            return Ok((number, self.id.clone(), self.name.clone()));
        }
        Err(Problem::from_status(403).with_detail(
            "only a signed-in user linked to an active member may post; ask an administrator to link your account",
        ))
    }
}

/// The member's status: Membership's, unless Membership said they left.
fn member_status(number: &str) -> Result<MemberStatus, Problem> {
    let row: Option<(String, i64)> = db::query_optional(
        "SELECT m.status, EXISTS (SELECT 1 FROM departed d WHERE d.number = m.number) \
         FROM membership.members m WHERE m.number = ?1",
        params![number],
    )?;
    Ok(match row {
        Some((status, 0)) => MemberStatus::parse(&status),
        _ => MemberStatus::Left,
    })
}

/// Who may view or post in a forum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Anybody, signed in or not (viewing only).
    Public,
    /// Every active member (`members`, or `status:active`).
    Members,
    /// Members whose Membership status is `suspended` (`status:suspended`),
    /// e.g. a forum for appeals; they may read and post nowhere else but
    /// public forums.
    Suspended,
    /// Administrators only.
    Admins,
}

impl Audience {
    /// Parses the stored or requested form: `public`, `members`,
    /// `status:active`, `status:suspended`, `admins`.
    pub fn parse(text: &str) -> Option<Audience> {
        Some(match text {
            "public" => Audience::Public,
            "members" | "status:active" => Audience::Members,
            "status:suspended" => Audience::Suspended,
            "admins" => Audience::Admins,
            _ => return None,
        })
    }

    /// The stored form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Audience::Public => "public",
            Audience::Members => "members",
            Audience::Suspended => "status:suspended",
            Audience::Admins => "admins",
        }
    }
}

impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(admin: bool, member: Option<MemberStatus>) -> Who {
        Who {
            id: "usr_1".into(),
            name: "Mia".into(),
            admin,
            member: member.map(|status| ("M-1".to_owned(), status)),
        }
    }

    #[test]
    fn audiences_admit_by_status_and_only_admins_pass_admins() {
        let anonymous = who(false, None);
        let active = who(false, Some(MemberStatus::Active));
        let suspended = who(false, Some(MemberStatus::Suspended));
        let left = who(false, Some(MemberStatus::Left));
        let admin = who(true, None);
        assert!(anonymous.admitted(&Audience::Public));
        assert!(!anonymous.admitted(&Audience::Members));
        assert!(active.admitted(&Audience::Members));
        assert!(!suspended.admitted(&Audience::Members));
        assert!(!left.admitted(&Audience::Members));
        assert!(suspended.admitted(&Audience::Suspended));
        assert!(!active.admitted(&Audience::Suspended));
        assert!(!active.admitted(&Audience::Admins));
        assert!(admin.admitted(&Audience::Admins));
        assert!(left.author().is_err());
        assert!(anonymous.author().is_err());
        assert_eq!(active.author().unwrap().0.as_deref(), Some("M-1"));
        assert!(admin.author().is_ok());
    }

    #[test]
    fn audiences_round_trip_and_refuse_unknown_words() {
        for text in ["public", "members", "status:suspended", "admins"] {
            assert_eq!(Audience::parse(text).unwrap().as_str(), text);
        }
        assert_eq!(Audience::parse("status:active"), Some(Audience::Members));
        assert_eq!(Audience::parse("status:left"), None);
        assert_eq!(Audience::parse("everyone"), None);
    }
}
