//! `souk user`: a tenant's users (the twins of `/v1/tenants/{t}/users`),
//! acting as the operator; and the people knobs every command shares
//! ([`PeopleOptions`], documented in docs/people.md).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::{GlobalOptions, open, print};
use crate::auth::{Principal, SessionPolicy};
use crate::capabilities::context::Role;
use crate::people::throttle::{LoginLimits, PublicRate};
use crate::people::{NewUser, PeopleConfig, StatusChange, User, UserChanges};

/// Users, invitations, sessions, sign-in throttling and the public
/// routes' rate.
#[derive(Debug, Args)]
pub(super) struct PeopleOptions {
    /// Hours an invitation token works.
    #[arg(
        long,
        global = true,
        env = "SOUK_INVITATION_TTL_HOURS",
        default_value_t = 168
    )]
    invitation_ttl_hours: u64,
    /// The page invitation links open (the token follows as `#token=…`).
    #[arg(
        long,
        global = true,
        env = "SOUK_INVITATION_URL",
        default_value = "http://127.0.0.1:8080/invitations/accept"
    )]
    invitation_url: String,
    /// Shortest password accepted, in characters.
    #[arg(
        long,
        global = true,
        env = "SOUK_MIN_PASSWORD_CHARS",
        default_value_t = 10
    )]
    min_password_chars: usize,
    /// Seconds a session may go unused before it expires.
    #[arg(
        long,
        global = true,
        env = "SOUK_SESSION_IDLE_SECS",
        default_value_t = 86_400
    )]
    session_idle_secs: u64,
    /// Seconds a session lives at most, however busy.
    #[arg(
        long,
        global = true,
        env = "SOUK_SESSION_MAX_SECS",
        default_value_t = 2_592_000
    )]
    session_max_secs: u64,
    /// The window failed sign-ins are counted in, in seconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_LOGIN_WINDOW_SECS",
        default_value_t = 900
    )]
    login_window_secs: u64,
    /// Failed sign-ins one account may have in the window (then 429).
    #[arg(
        long,
        global = true,
        env = "SOUK_LOGIN_FAILURES_PER_ACCOUNT",
        default_value_t = 5
    )]
    login_failures_per_account: u32,
    /// Failed sign-ins one client address may have in the window.
    #[arg(
        long,
        global = true,
        env = "SOUK_LOGIN_FAILURES_PER_ADDRESS",
        default_value_t = 20
    )]
    login_failures_per_address: u32,
    /// Anonymous calls of `public` routes a client address may make at once
    /// (the token bucket's size).
    #[arg(long, global = true, env = "SOUK_PUBLIC_BURST", default_value_t = 30)]
    public_burst: u32,
    /// Anonymous calls of `public` routes per minute and client address
    /// (the bucket's refill rate).
    #[arg(
        long,
        global = true,
        env = "SOUK_PUBLIC_PER_MINUTE",
        default_value_t = 120
    )]
    public_per_minute: u32,
    /// Mark the session cookie `Secure` (browsers then send it only over
    /// HTTPS); turn on behind TLS.
    #[arg(long, global = true, env = "SOUK_COOKIE_SECURE")]
    cookie_secure: bool,
}

impl PeopleOptions {
    /// The configuration these options give.
    pub(super) fn config(&self) -> PeopleConfig {
        PeopleConfig {
            invitation_ttl: Duration::from_secs(self.invitation_ttl_hours.max(1) * 3600),
            invitation_url: self.invitation_url.clone(),
            min_password_chars: self.min_password_chars.max(1),
            sessions: SessionPolicy {
                idle: Duration::from_secs(self.session_idle_secs.max(1)),
                absolute: Duration::from_secs(self.session_max_secs.max(1)),
            },
            login: LoginLimits {
                window: Duration::from_secs(self.login_window_secs.max(1)),
                per_account: self.login_failures_per_account.max(1),
                per_address: self.login_failures_per_address.max(1),
            },
            public_rate: PublicRate {
                burst: self.public_burst.max(1),
                per_minute: self.public_per_minute,
            },
            cookie_secure: self.cookie_secure,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Create a user and print their one-time invitation (token and link).
    Create {
        /// Tenant slug.
        tenant: String,
        /// E-mail address (unique in the tenant, compared without case).
        email: String,
        /// Display name (default: the address's part before `@`).
        #[arg(long)]
        name: Option<String>,
        /// `admin` or `member`.
        #[arg(long, default_value = "member", value_parser = parse_role)]
        role: Role,
        /// A Membership member number to link.
        #[arg(long)]
        member_number: Option<String>,
    },
    /// List a tenant's users (a page at a time).
    List {
        /// Tenant slug.
        tenant: String,
        /// Start after this user id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Users per page (1 to 200).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show a user.
    Show {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
    },
    /// Change a user's name, role, member number or status.
    Update {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New role: `admin` or `member`.
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        /// Link this Membership member number.
        #[arg(long, conflicts_with = "unlink_member")]
        member_number: Option<String>,
        /// Remove the linked member number.
        #[arg(long)]
        unlink_member: bool,
        /// Disable the user (ends every session).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Enable a disabled user.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a user with their sessions.
    Delete {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
    },
    /// Issue a new invitation (or password-reset link) for a user.
    Invite {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
    },
    /// List a user's sessions.
    Sessions {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
    },
    /// Revoke one of a user's sessions.
    RevokeSession {
        /// Tenant slug.
        tenant: String,
        /// User id.
        id: String,
        /// Session id.
        session: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        other => Err(format!("{other:?} is not a role: `admin` or `member`")),
    }
}

fn line(u: &User) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        u.id,
        u.email,
        u.display_name,
        u.role.as_str(),
        serde_json::to_value(u.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    )
}

pub(super) async fn run(command: UserCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    let people = souk.people();
    let operator = Principal::Operator;
    match command {
        UserCommand::Create {
            tenant,
            email,
            name,
            role,
            member_number,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let new = NewUser {
                email,
                display_name: name,
                role: Some(role),
                member_number,
            };
            let (user, invitation, emailed) = souk.create_user(&operator, &tenant, &new).await?;
            let value =
                serde_json::json!({"user": user, "invitation": invitation, "emailed": emailed});
            print(json, &value, |_| {
                format!(
                    "created user {}\ninvitation (shown once, expires {}): {}",
                    line(&user),
                    invitation.expires_at,
                    invitation.link
                )
            })
        }
        UserCommand::List {
            tenant,
            after,
            limit,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let page = people.list_users(&tenant, after.as_deref(), limit).await?;
            print(json, &page, |p| {
                let mut out: Vec<String> = p.users.iter().map(line).collect();
                if let Some(next) = &p.next {
                    out.push(format!("(more: --after {next})"));
                }
                out.join("\n")
            })
        }
        UserCommand::Show { tenant, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let user = people.show_user(&tenant, &id).await?;
            print(json, &user, line)
        }
        UserCommand::Update {
            tenant,
            id,
            name,
            role,
            member_number,
            unlink_member,
            disable,
            enable,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let changes = UserChanges {
                display_name: name,
                role,
                member_number: if unlink_member {
                    Some(None)
                } else {
                    member_number.map(Some)
                },
                status: if disable {
                    Some(StatusChange::Disabled)
                } else if enable {
                    Some(StatusChange::Active)
                } else {
                    None
                },
            };
            let user = people
                .update_user(&operator, &tenant, &id, &changes)
                .await?;
            print(json, &user, |u| format!("updated user {}", line(u)))
        }
        UserCommand::Delete { tenant, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let user = people.delete_user(&operator, &tenant, &id).await?;
            print(json, &user, |u| format!("deleted user {}", line(u)))
        }
        UserCommand::Invite { tenant, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let (invitation, _emailed) = souk.invite_user(&tenant, &id).await?;
            print(json, &invitation, |i| {
                format!(
                    "invitation (shown once, expires {}): {}",
                    i.expires_at, i.link
                )
            })
        }
        UserCommand::Sessions { tenant, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let sessions = people.list_sessions(&tenant, &id).await?;
            print(json, &sessions, |ss| {
                ss.iter()
                    .map(|s| {
                        format!(
                            "{}\t{}\t{}",
                            s.id,
                            s.created_at,
                            s.revoked_at
                                .as_deref()
                                .map_or(format!("expires {}", s.expires_at), |r| {
                                    format!("revoked {r}")
                                })
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserCommand::RevokeSession {
            tenant,
            id,
            session,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let info = people
                .revoke_session(&operator, &tenant, &id, &session)
                .await?;
            print(json, &info, |s| format!("revoked session {}", s.id))
        }
    }
}
