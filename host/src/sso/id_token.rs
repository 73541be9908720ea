//! Verifying an OpenID Connect ID token (OpenID Connect Core 1.0, 3.1.3.7)
//! without I/O: the compact JWS's signature against the provider's JSON Web
//! Key Set, then its claims against what this sign-in expects.
//!
//! Only RSA PKCS#1 v1.5 signatures (`RS256`, `RS384`, `RS512`) are
//! accepted, with keys of at least 2048 bits. `none` and the HMAC
//! algorithms are refused by name: an HMAC "signature" would be keyed with
//! the client secret, which the host shares with every administrator of
//! the provider, and `none` is no signature at all.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use crate::secrets::token_hash;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why an ID token was refused. The messages name the rule, never the
/// token's content beyond the algorithm or claim name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with JSON header and claims.
    #[error("the ID token is not a well-formed signed JWT")]
    Malformed,
    /// `alg` is not one the host accepts.
    #[error("the ID token is signed with {0:?}; only RS256, RS384 and RS512 are accepted")]
    Algorithm(String),
    /// The header lists extensions (`crit`) the host does not implement.
    #[error("the ID token's header requires extensions the host does not implement")]
    Critical,
    /// No key of the provider's set has the token's `kid` (the caller may
    /// fetch the set again once).
    #[error("the ID token names a key the provider does not publish")]
    UnknownKey,
    /// The signature does not verify with any matching key.
    #[error("the ID token's signature does not verify with the provider's keys")]
    Signature,
    /// A claim is missing or has the wrong value.
    #[error("the ID token's `{0}` claim is missing or not as expected")]
    Claim(&'static str),
    /// `exp` is past (beyond the leeway).
    #[error("the ID token has expired")]
    Expired,
    /// `iat` or `nbf` lies in the future (beyond the leeway).
    #[error("the ID token is not valid yet")]
    NotYetValid,
    /// `email_verified` is not true.
    #[error("the provider has not verified this e-mail address")]
    EmailNotVerified,
}

/// An RSA signature key of a provider's JSON Web Key Set.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// `kid`, when published.
    pub kid: Option<String>,
    /// `alg`, when published: the key is then used only with it.
    pub alg: Option<String>,
    key: RsaPublicKey,
}

/// A provider's signature keys: the RSA keys of its JWKS meant for
/// signatures (`use` absent or `sig`). Other keys are ignored.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// The keys.
    pub keys: Vec<SigningKey>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Value>,
}

impl KeySet {
    /// Parses a JWKS document, keeping its usable RSA signature keys.
    ///
    /// # Errors
    /// A message when the document is not a JWKS.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let jwks: Jwks = serde_json::from_slice(bytes)
            .map_err(|_| "the JWKS is not a JSON object with a `keys` array".to_owned())?;
        let keys = jwks
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(|k| k.kty == "RSA" && k.usage.as_deref().is_none_or(|u| u == "sig"))
            .filter_map(|k| {
                let n = URL_SAFE_NO_PAD.decode(k.n?).ok()?;
                let e = URL_SAFE_NO_PAD.decode(k.e?).ok()?;
                let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                    .ok()?;
                (rsa::traits::PublicKeyParts::size(&key) * 8 >= MIN_RSA_BITS).then_some(
                    SigningKey {
                        kid: k.kid,
                        alg: k.alg,
                        key,
                    },
                )
            })
            .collect();
        Ok(KeySet { keys })
    }

    /// Whether a key has id `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// What a sign-in expects of its ID token.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The configured issuer (compared exactly).
    pub issuer: &'a str,
    /// The tenant's client id (must be an audience, and `azp` if present).
    pub client_id: &'a str,
    /// sha256 (hex) of the nonce sent with this sign-in.
    pub nonce_hash: &'a str,
    /// Now, unix seconds, from the host's clock.
    pub now: i64,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, seconds.
    pub leeway: i64,
}

/// The claims of a verified ID token the host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: the provider's id of the person.
    pub subject: String,
    /// `email`, verified by the provider.
    pub email: String,
    /// `name`, if given.
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

#[derive(Clone, Copy)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
}

impl Alg {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "RS384" => Some(Alg::Rs384),
            "RS512" => Some(Alg::Rs512),
            _ => None,
        }
    }

    fn verifies(self, key: &RsaPublicKey, message: &[u8], signature: &Signature) -> bool {
        let key = key.clone();
        match self {
            Alg::Rs256 => VerifyingKey::<Sha256>::new(key)
                .verify(message, signature)
                .is_ok(),
            Alg::Rs384 => VerifyingKey::<Sha384>::new(key)
                .verify(message, signature)
                .is_ok(),
            Alg::Rs512 => VerifyingKey::<Sha512>::new(key)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// The key id `token`'s header names, if it is well formed and names one
/// (to decide whether the key set should be fetched again).
pub fn kid_of(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    decode_json::<Header>(header).ok()?.kid
}

/// Verifies `token` with `keys` and `expected`; answers the identity it
/// carries.
///
/// # Errors
/// [`TokenError`] naming the first rule broken.
pub fn verify(token: &str, keys: &KeySet, expected: &Expected<'_>) -> Result<Identity, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(TokenError::Malformed);
    };
    let header: Header = decode_json(header_b64)?;
    let alg = Alg::parse(&header.alg).ok_or_else(|| TokenError::Algorithm(header.alg.clone()))?;
    if header.crit.is_some() {
        return Err(TokenError::Critical);
    }
    let signature_bytes = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed)?;
    let signature =
        Signature::try_from(signature_bytes.as_slice()).map_err(|_| TokenError::Signature)?;
    let candidates: Vec<&SigningKey> = keys
        .keys
        .iter()
        .filter(|k| match &header.kid {
            Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
            None => true,
        })
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == header.alg))
        .collect();
    if candidates.is_empty() {
        return Err(if header.kid.is_some() {
            TokenError::UnknownKey
        } else {
            TokenError::Signature
        });
    }
    let message = format!("{header_b64}.{claims_b64}");
    if !candidates
        .iter()
        .any(|k| alg.verifies(&k.key, message.as_bytes(), &signature))
    {
        return Err(TokenError::Signature);
    }
    let claims: Value = decode_json(claims_b64)?;
    check_claims(&claims, expected)
}

fn check_claims(claims: &Value, expected: &Expected<'_>) -> Result<Identity, TokenError> {
    let text = |name: &'static str| claims[name].as_str().ok_or(TokenError::Claim(name));
    let number = |name: &'static str| claims[name].as_i64().ok_or(TokenError::Claim(name));
    if text("iss")? != expected.issuer {
        return Err(TokenError::Claim("iss"));
    }
    let audiences: Vec<&str> = match &claims["aud"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::Claim("aud")),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(TokenError::Claim("aud"));
    }
    match &claims["azp"] {
        Value::Null if audiences.len() == 1 => {}
        Value::String(azp) if azp == expected.client_id => {}
        _ => return Err(TokenError::Claim("azp")),
    }
    if number("exp")? <= expected.now - expected.leeway {
        return Err(TokenError::Expired);
    }
    if number("iat")? > expected.now + expected.leeway {
        return Err(TokenError::NotYetValid);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(TokenError::Claim("nbf"))?;
        if nbf > expected.now + expected.leeway {
            return Err(TokenError::NotYetValid);
        }
    }
    let nonce = text("nonce")?;
    // Hashes are compared, so timing tells nothing about the nonce itself.
    if token_hash(nonce) != expected.nonce_hash {
        return Err(TokenError::Claim("nonce"));
    }
    let subject = text("sub")?;
    // OpenID Connect Core 2: at most 255 ASCII characters.
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(TokenError::Claim("sub"));
    }
    let email = text("email")?;
    let verified = match &claims["email_verified"] {
        Value::Bool(b) => *b,
        // Some providers send the boolean as a string.
        Value::String(s) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(TokenError::EmailNotVerified);
    }
    Ok(Identity {
        subject: subject.to_owned(),
        email: email.to_owned(),
        name: claims["name"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPrivateKey;
    use rsa::pkcs1v15::SigningKey as RsaSigner;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rsa::traits::PublicKeyParts as _;
    use serde_json::json;
    use std::sync::OnceLock;

    const NOW: i64 = 1_800_000_000;

    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwks(kid: &str) -> KeySet {
        let public = key().to_public_key();
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": b64(&public.n().to_bytes_be()), "e": "AQAB"},
            {"kty": "RSA", "kid": kid, "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())},
        ]});
        KeySet::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": "https://id.example.com", "sub": "248289761001",
            "aud": "souk", "exp": NOW + 300, "iat": NOW, "nonce": "n-0S6",
            "email": "Jane@Example.com", "email_verified": true, "name": "Jane Doe",
        })
    }

    fn signed(header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = RsaSigner::<Sha256>::new(key().clone()).sign(message.as_bytes());
        format!("{message}.{}", b64(&signature.to_bytes()))
    }

    fn rs256(claims: &Value) -> String {
        signed(&json!({"alg": "RS256", "kid": "k1"}), claims)
    }

    fn nonce_hash() -> String {
        token_hash("n-0S6")
    }

    fn check(token: &str) -> Result<Identity, TokenError> {
        let hash = nonce_hash();
        let expected = Expected {
            issuer: "https://id.example.com",
            client_id: "souk",
            nonce_hash: &hash,
            now: NOW,
            leeway: 60,
        };
        verify(token, &jwks("k1"), &expected)
    }

    #[test]
    fn a_good_token_verifies_and_only_rsa_signature_keys_are_kept() {
        assert_eq!(jwks("k1").keys.len(), 1);
        let identity = check(&rs256(&claims())).unwrap();
        assert_eq!(identity.email, "Jane@Example.com");
        assert_eq!(identity.subject, "248289761001");
        // A string "true" counts; a token without `kid` tries every key.
        let mut c = claims();
        c["email_verified"] = json!("true");
        assert!(check(&signed(&json!({"alg": "RS256"}), &c)).is_ok());
    }

    #[test]
    fn forged_and_unsupported_signatures_are_refused() {
        let body = b64(claims().to_string().as_bytes());
        let none = format!("{}.{body}.", b64(br#"{"alg":"none"}"#));
        assert_eq!(check(&none), Err(TokenError::Algorithm("none".into())));
        let hs = format!("{}.{body}.AAAA", b64(br#"{"alg":"HS256","kid":"k1"}"#));
        assert_eq!(check(&hs), Err(TokenError::Algorithm("HS256".into())));
        let ps = format!("{}.{body}.AAAA", b64(br#"{"alg":"PS256","kid":"k1"}"#));
        assert!(matches!(check(&ps), Err(TokenError::Algorithm(_))));
        // A changed claim breaks the signature.
        let good = rs256(&claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut tampered = claims();
        tampered["email"] = json!("mallory@example.com");
        let tampered = b64(tampered.to_string().as_bytes());
        parts[1] = &tampered;
        assert_eq!(check(&parts.join(".")), Err(TokenError::Signature));
        // An unknown key id, a critical extension, junk.
        let other = signed(&json!({"alg": "RS256", "kid": "k9"}), &claims());
        assert_eq!(check(&other), Err(TokenError::UnknownKey));
        let crit = signed(
            &json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
            &claims(),
        );
        assert_eq!(check(&crit), Err(TokenError::Critical));
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &format!("{body}.{body}.{body}"),
        ] {
            assert!(check(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn claims_must_match_the_sign_in() {
        let refused = |edit: &dyn Fn(&mut Value)| {
            let mut c = claims();
            edit(&mut c);
            check(&rs256(&c)).unwrap_err()
        };
        assert_eq!(
            refused(&|c| c["iss"] = json!("https://id.example.com/")),
            TokenError::Claim("iss")
        );
        assert_eq!(
            refused(&|c| c["aud"] = json!("other")),
            TokenError::Claim("aud")
        );
        assert_eq!(
            refused(&|c| c["aud"] = json!(["other", "souk"])),
            TokenError::Claim("azp")
        );
        assert_eq!(
            refused(&|c| c["nonce"] = json!("n-other")),
            TokenError::Claim("nonce")
        );
        assert_eq!(
            refused(&|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            TokenError::Claim("nonce")
        );
        assert_eq!(
            refused(&|c| c["exp"] = json!(NOW - 61)),
            TokenError::Expired
        );
        assert_eq!(
            refused(&|c| c["iat"] = json!(NOW + 61)),
            TokenError::NotYetValid
        );
        assert_eq!(
            refused(&|c| c["nbf"] = json!(NOW + 61)),
            TokenError::NotYetValid
        );
        assert_eq!(
            refused(&|c| c["email_verified"] = json!(false)),
            TokenError::EmailNotVerified
        );
        assert_eq!(
            refused(&|c| {
                c.as_object_mut().unwrap().remove("email_verified");
            }),
            TokenError::EmailNotVerified
        );
        assert_eq!(refused(&|c| c["sub"] = json!("")), TokenError::Claim("sub"));
        assert_eq!(
            refused(&|c| c["sub"] = json!("x".repeat(256))),
            TokenError::Claim("sub")
        );
        // Within the leeway, and with several audiences naming us as azp.
        let mut c = claims();
        c["exp"] = json!(NOW - 30);
        c["aud"] = json!(["souk", "other"]);
        c["azp"] = json!("souk");
        assert!(check(&rs256(&c)).is_ok());
    }

    #[test]
    fn small_rsa_keys_are_ignored() {
        let small = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let public = small.to_public_key();
        let doc =
            json!({"keys": [{"kty": "RSA", "n": b64(&public.n().to_bytes_be()), "e": "AQAB"}]});
        assert!(
            KeySet::parse(doc.to_string().as_bytes())
                .unwrap()
                .keys
                .is_empty()
        );
        assert!(KeySet::parse(b"[]").is_err());
    }
}
