//! A small OpenID Connect provider on loopback for the single sign-on
//! tests: discovery, a JWKS, `/authorize` that sends the browser straight
//! back with a code for the preset user, and `/token` that checks the
//! client secret, the redirect URI and the PKCE verifier before answering
//! an RS256-signed ID token. [`Misbehaviour`] makes it answer forged or
//! wrong tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::Mac as _;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The client the provider knows.
pub const CLIENT_ID: &str = "souk-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "the-client-secret-0123456789";

/// How the next ID tokens are wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Correct tokens.
    None,
    /// Signed with a key the JWKS does not publish (same `kid`).
    WrongKey,
    /// `alg: none`, no signature.
    AlgNone,
    /// `alg: HS256`, keyed with the client secret.
    Hmac,
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` an hour before now.
    Expired,
    /// `nonce` is not the one the host sent.
    WrongNonce,
    /// Signed with a new key (`kid` k2) that the JWKS publishes only from
    /// now on: a key rotation.
    Rotated,
}

/// The person who signs in.
#[derive(Debug, Clone)]
pub struct Person {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: String,
    challenge: String,
}

struct Inner {
    person: Person,
    misbehaviour: Misbehaviour,
    now: i64,
    codes: HashMap<String, Grant>,
    /// What each token request sent (form fields), for assertions.
    token_requests: Vec<HashMap<String, String>>,
}

struct Shared {
    issuer: String,
    key: RsaPrivateKey,
    rotated: RsaPrivateKey,
    forger: RsaPrivateKey,
    inner: Mutex<Inner>,
}

/// A running provider; stops with its runtime when dropped.
pub struct Provider {
    pub issuer: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(key: &RsaPublicKey, kid: &str) -> Value {
    json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
    })
}

impl Provider {
    /// Starts a provider on loopback whose clock reads `now` (unix
    /// seconds; the host's manual clock) and whose user is `person`.
    pub fn start(now: i64, person: Person) -> Provider {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("provider runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind provider");
        let addr: SocketAddr = listener.local_addr().expect("provider address");
        let issuer = format!("http://{addr}");
        let mut rng = rsa::rand_core::OsRng;
        let mut generate = || RsaPrivateKey::new(&mut rng, 2048).expect("rsa key");
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            key: generate(),
            rotated: generate(),
            forger: generate(),
            inner: Mutex::new(Inner {
                person,
                misbehaviour: Misbehaviour::None,
                now,
                codes: HashMap::new(),
                token_requests: Vec::new(),
            }),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider {
            issuer,
            shared,
            _runtime: runtime,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("provider state")
    }

    /// Makes the next tokens wrong in `how`.
    pub fn misbehave(&self, how: Misbehaviour) {
        self.inner().misbehaviour = how;
    }

    /// The person who signs in next.
    pub fn set_person(&self, person: Person) {
        self.inner().person = person;
    }

    /// The form fields of every token request so far.
    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.inner().token_requests.clone()
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = &shared.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": ["openid", "email", "profile"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let rotated = shared.inner.lock().expect("state").misbehaviour == Misbehaviour::Rotated;
    let mut keys = vec![jwk(&shared.key.to_public_key(), "k1")];
    if rotated {
        keys.push(jwk(&shared.rotated.to_public_key(), "k2"));
    }
    // A key of another type, which the host must skip.
    keys.push(json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"}));
    axum::Json(json!({ "keys": keys })).into_response()
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| q.get(k).cloned().unwrap_or_default();
    if field("response_type") != "code"
        || field("client_id") != CLIENT_ID
        || field("code_challenge_method") != "S256"
        || field("code_challenge").is_empty()
        || !field("scope").split(' ').any(|s| s == "openid")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = b64(&rand::random::<[u8; 16]>());
    shared.inner.lock().expect("state").codes.insert(
        code.clone(),
        Grant {
            client_id: field("client_id"),
            redirect_uri: field("redirect_uri"),
            nonce: field("nonce"),
            challenge: field("code_challenge"),
        },
    );
    let mut back = url::Url::parse(&field("redirect_uri")).expect("redirect_uri");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"))
        .append_pair("iss", &shared.issuer);
    Redirect::to(back.as_str()).into_response()
}

fn invalid_grant(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

fn sign_rs256(key: &RsaPrivateKey, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(message.as_bytes());
    format!("{message}.{}", b64(&signature.to_bytes()))
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut inner = shared.inner.lock().expect("state");
    inner.token_requests.push(form.clone());
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    if basic.as_deref() != Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return invalid_grant("grant_type");
    }
    let Some(grant) = inner.codes.remove(&field("code")) else {
        return invalid_grant("unknown or used code");
    };
    if grant.client_id != CLIENT_ID || grant.redirect_uri != field("redirect_uri") {
        return invalid_grant("redirect_uri");
    }
    if b64(&Sha256::digest(field("code_verifier").as_bytes())) != grant.challenge {
        return invalid_grant("PKCE verifier");
    }
    let now = inner.now;
    let how = inner.misbehaviour;
    let person = inner.person.clone();
    drop(inner);
    let mut claims = json!({
        "iss": shared.issuer,
        "sub": person.sub,
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": grant.nonce,
        "email": person.email,
        "email_verified": person.email_verified,
        "name": person.name,
    });
    match how {
        Misbehaviour::WrongAudience => claims["aud"] = json!("another-client"),
        Misbehaviour::WrongIssuer => claims["iss"] = json!("https://evil.example"),
        Misbehaviour::Expired => {
            claims["exp"] = json!(now - 3600);
            claims["iat"] = json!(now - 3900);
        }
        Misbehaviour::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
        _ => {}
    }
    let id_token = match how {
        Misbehaviour::WrongKey => sign_rs256(&shared.forger, "k1", &claims),
        Misbehaviour::Rotated => sign_rs256(&shared.rotated, "k2", &claims),
        Misbehaviour::AlgNone => format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        ),
        Misbehaviour::Hmac => {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"});
            let message = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let mut mac =
                hmac::Hmac::<Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).expect("hmac key");
            mac.update(message.as_bytes());
            format!("{message}.{}", b64(&mac.finalize().into_bytes()))
        }
        _ => sign_rs256(&shared.key, "k1", &claims),
    };
    axum::Json(json!({
        "access_token": b64(&rand::random::<[u8; 16]>()),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}
