//! The native peer of `scripts/bench`'s goal P2: what Souk's
//! `GET /t/{tenant}/m/membership/members/{number}` does, written as an
//! ordinary axum application with no WebAssembly, over the same files.
//!
//! It serves `GET /members/{number}` for one tenant of a Souk data
//! directory and, per request, does what the host and the Membership module
//! do between them:
//!
//! 1. the token check of `host/src/auth.rs`: a tenant token (`souk_tk_`
//!    prefix) whose sha256, hex encoded (`host/src/secrets.rs`), names an
//!    unrevoked row of the control plane's `tenant_tokens`
//!    (`host/src/control_plane/tokens.rs`, same query), looked up through its
//!    own sqlx pool on `control.sqlite`; the token must belong to the tenant
//!    (another tenant's token gets the same 404 as in Souk);
//! 2. the SELECT Membership's `show_member` runs
//!    (`plugins/membership/src/routes.rs`), on the module's physical table
//!    `membership__members` in the tenant's database file, through a second
//!    sqlx pool;
//! 3. the member as JSON, with the fields in the order Membership writes
//!    them; 404 when there is no such member, 401 for a bad token.
//!
//! The tenant's id (which names its database file) is read once at start
//! from the `tenants` table. Both pools are read-only: the peer never writes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The prefix of every tenant token (`host/src/auth.rs`).
const TENANT_PREFIX: &str = "souk_tk_";

#[derive(Parser)]
#[command(about = "Membership's GET /members/{number} as a native axum handler (benchmark peer)")]
struct Args {
    /// Souk's data directory (holds control.sqlite and tenants/).
    #[arg(long)]
    data_dir: PathBuf,
    /// The tenant whose members are served.
    #[arg(long)]
    tenant: String,
    /// Address to listen on; port 0 picks a free one (printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Connections of each sqlx pool.
    #[arg(long, default_value_t = 8)]
    pool_size: u32,
}

struct App {
    control: SqlitePool,
    tenant: SqlitePool,
    tenant_id: String,
}

/// A member as Membership answers it (`plugins/membership/src/member.rs`).
#[derive(Serialize, sqlx::FromRow)]
struct Member {
    number: String,
    name: String,
    email: Option<String>,
    status: String,
    joined_on: String,
}

fn read_only(path: PathBuf) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(5))
}

async fn pool(path: PathBuf, size: u32) -> anyhow::Result<SqlitePool> {
    let shown = path.display().to_string();
    SqlitePoolOptions::new()
        .max_connections(size)
        .connect_with(read_only(path))
        .await
        .with_context(|| format!("opening {shown}"))
}

fn problem(status: StatusCode, title: &str, detail: String) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "a valid token is required: send `Authorization: Bearer <token>`".into(),
    )
}

fn internal(error: sqlx::Error) -> Response {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        error.to_string(),
    )
}

async fn show_member(
    State(app): State<Arc<App>>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(TENANT_PREFIX));
    let Some(token) = token else {
        return unauthorized();
    };
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let owner: Option<(String, String, String)> = match sqlx::query_as(
        "SELECT id, tenant_id, name FROM tenant_tokens WHERE token_hash = ? AND revoked_at IS NULL",
    )
    .bind(&hash)
    .fetch_optional(&app.control)
    .await
    {
        Ok(row) => row,
        Err(e) => return internal(e),
    };
    match owner {
        None => return unauthorized(),
        Some((_, tenant_id, _)) if tenant_id != app.tenant_id => {
            return problem(StatusCode::NOT_FOUND, "Not Found", "no such tenant".into());
        }
        Some(_) => {}
    }
    let member: Option<Member> = match sqlx::query_as(
        "SELECT number, name, email, status, joined_on FROM membership__members WHERE number = ?1",
    )
    .bind(&number)
    .fetch_optional(&app.tenant)
    .await
    {
        Ok(row) => row,
        Err(e) => return internal(e),
    };
    match member {
        Some(member) => Json(member).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "No such member",
            format!("no member has the number `{number}`"),
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let control = pool(args.data_dir.join("control.sqlite"), args.pool_size).await?;
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = ?")
        .bind(&args.tenant)
        .fetch_optional(&control)
        .await?
        .with_context(|| format!("no tenant {:?} in the control plane", args.tenant))?;
    let tenant_file = args
        .data_dir
        .join("tenants")
        .join(format!("{tenant_id}.sqlite"));
    let tenant = pool(tenant_file, args.pool_size).await?;
    let app = Arc::new(App {
        control,
        tenant,
        tenant_id,
    });
    let router = Router::new()
        .route("/members/{number}", get(show_member))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "native-peer: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router).await?;
    Ok(())
}
