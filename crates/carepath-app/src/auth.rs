//! Bearer-token authentication: JWTs carrying the caller's role and subject.
//!
//! On the embedded default the instance makes its own Ed25519 signing key on first
//! start and keeps it beside the database (never in the repository); `carepath token`
//! mints tokens with it. In production only verifying keys are configured (Ed25519 or
//! RSA public keys in PEM), and tokens come from the organisation's identity provider.
//!
//! Checking a signature is the costliest step of a call, and a client sends the same
//! token with every call until it expires. So a token that verified is remembered, by
//! the SHA-256 of its exact text, with the caller it names and its expiry: the same
//! text again is that caller until the token expires; any other text, however
//! similar, is verified in full.
//!
//! What a token must say (checked against the injected clock, with
//! [`LEEWAY_SECS`] for clock skew): an issuer this instance accepts, the configured
//! audience when one is set (and none otherwise), `iat` not in the future, `nbf` (when
//! present) passed, `exp` not passed, and a lifetime (`exp - iat`) within the policy's
//! cap. Verifying keys are PEM files or a JSON Web Key Set (a file, or the URL an
//! OIDC provider publishes, fetched again every [`JWKS_REFRESH`]). Refusals name the
//! rule broken in fixed words: nothing of the token's text is echoed.
//!
//! A token minted for a FHIR backend-service client ([`Authenticator::mint_scoped`])
//! also carries the SMART scopes it was granted and the client's id. Only
//! [`Authenticator::authenticate_scoped`] accepts it, and hands the scopes to the
//! door to check; [`Authenticator::authenticate`] (the gRPC door, which knows no
//! scopes) refuses it, so a token narrowed to some scopes is never used as a
//! provider's full token.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use carepath_core::{Actor, Role};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::smart::Scopes;

/// The issuer every carepath token names.
pub const ISSUER: &str = "carepath";

/// Why a token was refused. The message is safe to send to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing authorization metadata: send 'authorization: Bearer <token>'")]
    Missing,
    #[error("authorization metadata must be 'Bearer <token>'")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token rejected: not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("token rejected: it lives longer than the {0} hours this server accepts")]
    TooLong(i64),
    /// A staff role whose subject the staff directory does not hold in that role.
    #[error("token rejected: the subject is not on the staff directory in this role")]
    UnknownStaff,
    #[error("token rejected: {0}")]
    Rejected(String),
    /// A token limited to SMART scopes, presented where scopes are not checked.
    #[error("token rejected: a scoped token is accepted only by the FHIR API")]
    Scoped,
}

/// Failures handling key files; reported at start-up, never to callers.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not a usable key: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("this instance has no signing key: tokens come from the configured issuer")]
    NoSigningKey,
    #[error(
        "a token lifetime of {asked} hours is over the {cap}-hour cap tokens are checked against"
    )]
    TooLong { asked: i64, cap: i64 },
    #[error("cannot fetch the key set at {url}: {reason}")]
    Fetch { url: String, reason: String },
}

/// The claims of a carepath token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Not before: the token is refused until then (minus the leeway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The SMART scopes granted, space-separated; only on tokens of FHIR
    /// backend-service clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The FHIR backend-service client the token was granted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Seconds of clock skew between the issuer and us: a token is accepted this long past
/// its `exp`, and this long before its `nbf` or `iat`.
pub const LEEWAY_SECS: i64 = 30;
/// How long a staff member's role, confirmed on the staff directory, is trusted
/// before the directory is read again.
pub const STAFF_CONFIRMATION_SECS: i64 = 60;
/// How often a key set fetched from a URL is fetched again (keys rotate).
pub const JWKS_REFRESH: Duration = Duration::from_secs(600);
/// The longest lifetime (`exp - iat`) of a token accepted by default: a working day
/// and more, so a token that leaks does not stay useful for long.
pub const DEFAULT_MAX_TOKEN_HOURS: i64 = 24;

/// What a token must say beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Issuers accepted (`iss`); carepath's own tokens name [`ISSUER`].
    pub issuers: Vec<String>,
    /// The audience a token must name (`aud`); with none, a token naming any audience
    /// is refused (it was meant for another service).
    pub audience: Option<String>,
    /// The longest `exp - iat` accepted.
    pub max_lifetime: chrono::Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            issuers: vec![ISSUER.to_owned()],
            audience: None,
            max_lifetime: chrono::Duration::hours(DEFAULT_MAX_TOKEN_HOURS),
        }
    }
}

/// One key tokens are verified with: its algorithm, and the key id (`kid`) a key set
/// gives it, which a token's header must then name.
#[derive(Clone)]
struct VerifyingKey {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}
/// Most verified tokens remembered; past it, expired ones are forgotten, and all of
/// them if that is not enough.
const MAX_VERIFIED: usize = 8192;

/// What a verified token says: the caller, its scopes (`None` when the token carries
/// no `scope` claim), and the last second (UNIX time) the token is accepted.
#[derive(Debug, Clone)]
struct Checked {
    actor: Actor,
    scopes: Option<Scopes>,
    until: i64,
}

/// Tokens that verified, by the SHA-256 of the token's text.
type Verified = HashMap<[u8; 32], Checked>;

/// Keys to verify tokens with, and optionally one to mint them.
#[derive(Clone)]
pub struct Authenticator {
    signing: Option<EncodingKey>,
    /// Replaced whole when a key set is fetched again.
    verifying: Arc<RwLock<Vec<VerifyingKey>>>,
    policy: TokenPolicy,
    verified: Arc<Mutex<Verified>>,
    /// Staff callers confirmed on the directory, until when (UNIX time).
    staff: Arc<Mutex<HashMap<Actor, i64>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("can_sign", &self.signing.is_some())
            .field(
                "verifying_keys",
                &self.verifying.read().map_or(0, |keys| keys.len()),
            )
            .field("policy", &self.policy)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

impl Authenticator {
    /// Loads the Ed25519 signing key at `path`, creating it (readable by the owner
    /// only) when it does not exist. Tokens it signs are verified with its public half.
    pub fn with_local_key(path: &Path) -> Result<Self, KeyError> {
        let key = if path.exists() {
            let pem = String::from_utf8(read(path)?).map_err(|e| invalid(path, e))?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| invalid(path, e))?
        } else {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| invalid(path, e))?;
            write_private(path, pem.as_bytes())?;
            tracing::info!(path = %path.display(), "created a new token signing key");
            key
        };
        let der = key.to_pkcs8_der().map_err(|e| invalid(path, e))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| invalid(path, e))?;
        let verifying =
            DecodingKey::from_ed_pem(public_pem.as_bytes()).map_err(|e| invalid(path, e))?;
        Ok(Authenticator::verifying_with(
            Some(EncodingKey::from_ed_der(der.as_bytes())),
            vec![VerifyingKey {
                alg: Algorithm::EdDSA,
                kid: None,
                key: verifying,
            }],
        ))
    }

    /// Verifies with the given public keys only (PEM files, Ed25519 or RSA); cannot
    /// mint tokens.
    pub fn with_public_keys(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut verifying = Vec::new();
        for path in paths {
            let pem = read(path)?;
            let (alg, key) = if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                (Algorithm::EdDSA, key)
            } else {
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|_| invalid(path, "expected an Ed25519 or RSA public key in PEM"))?;
                (Algorithm::RS256, key)
            };
            verifying.push(VerifyingKey {
                alg,
                kid: None,
                key,
            });
        }
        Ok(Authenticator::verifying_with(None, verifying))
    }

    /// Verifies with the signing keys of a JSON Web Key Set (the `jwks_uri` document
    /// of an OIDC provider) read from `path`; cannot mint tokens.
    pub fn with_jwks_file(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        let keys = keys_of_set(&text).map_err(|reason| invalid(path, reason))?;
        Ok(Authenticator::verifying_with(None, keys))
    }

    /// Verifies with the key set published at `url`, fetched now; keep it fresh with
    /// [`Authenticator::refresh_jwks`]. Cannot mint tokens.
    pub async fn with_jwks_url(url: &str) -> Result<Self, KeyError> {
        let keys = fetch_jwks(url).await?;
        Ok(Authenticator::verifying_with(None, keys))
    }

    /// Fetches the key set at `url` again and verifies with it from now on; on failure
    /// the keys in use stay.
    pub async fn refresh_jwks(&self, url: &str) -> Result<usize, KeyError> {
        let keys = fetch_jwks(url).await?;
        let count = keys.len();
        *self.verifying.write().expect("not poisoned") = keys;
        Ok(count)
    }

    fn verifying_with(signing: Option<EncodingKey>, verifying: Vec<VerifyingKey>) -> Self {
        Authenticator {
            signing,
            verifying: Arc::new(RwLock::new(verifying)),
            policy: TokenPolicy::default(),
            verified: Arc::default(),
            staff: Arc::default(),
        }
    }

    /// The same keys, checking tokens against `policy`.
    pub fn with_policy(mut self, policy: TokenPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What tokens are checked against.
    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Whether `actor` (a staff caller) was confirmed on the staff directory within
    /// the last [`STAFF_CONFIRMATION_SECS`].
    pub fn staff_confirmed(&self, actor: &Actor, now: DateTime<Utc>) -> bool {
        let staff = self.staff.lock().expect("not poisoned");
        staff
            .get(actor)
            .is_some_and(|until| now.timestamp() <= *until)
    }

    /// Remembers that `actor` is on the staff directory in its role; bounded like the
    /// verified tokens.
    pub fn confirm_staff(&self, actor: &Actor, now: DateTime<Utc>) {
        let now = now.timestamp();
        let mut staff = self.staff.lock().expect("not poisoned");
        if staff.len() >= MAX_VERIFIED {
            staff.retain(|_, until| now <= *until);
            if staff.len() >= MAX_VERIFIED {
                staff.clear();
            }
        }
        staff.insert(actor.clone(), now + STAFF_CONFIRMATION_SECS);
    }

    /// Mints a token for `actor`, valid from `now` for `ttl` (at most the policy's
    /// lifetime cap: a longer token would be refused).
    pub fn mint(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, KeyError> {
        if ttl > self.policy.max_lifetime {
            return Err(KeyError::TooLong {
                asked: ttl.num_hours(),
                cap: self.policy.max_lifetime.num_hours(),
            });
        }
        self.sign(Claims {
            sub: actor.subject.clone(),
            role: actor.role.as_str().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            nbf: None,
            scope: None,
            client_id: None,
        })
    }

    /// Mints a token for `actor` limited to the SMART scopes `scope`
    /// (space-separated), granted to the FHIR client `client_id`, valid from `now`
    /// for `ttl`. Only [`Authenticator::authenticate_scoped`] accepts it.
    pub fn mint_scoped(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
        scope: &str,
        client_id: &str,
    ) -> Result<String, KeyError> {
        self.sign(Claims {
            sub: actor.subject.clone(),
            role: actor.role.as_str().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
            nbf: None,
            scope: Some(scope.to_owned()),
            client_id: Some(client_id.to_owned()),
        })
    }

    fn sign(&self, claims: Claims) -> Result<String, KeyError> {
        let key = self.signing.as_ref().ok_or(KeyError::NoSigningKey)?;
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, key).map_err(|e| {
            KeyError::Invalid {
                path: PathBuf::new(),
                reason: e.to_string(),
            }
        })
    }

    /// Checks the `authorization` value (`Bearer <token>`) and returns who is calling;
    /// `now` is the clock's reading the token's expiry is checked against. A token
    /// limited to SMART scopes is refused ([`AuthError::Scoped`]).
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Actor, AuthError> {
        let checked = self.check(header, now)?;
        if checked.scopes.is_some() {
            return Err(AuthError::Scoped);
        }
        Ok(checked.actor)
    }

    /// Checks the `authorization` value like [`Authenticator::authenticate`] and also
    /// returns the SMART scopes the token grants ([`Scopes::none`] for a token
    /// without a `scope` claim), for a door that checks them.
    pub fn authenticate_scoped(
        &self,
        header: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Actor, Scopes), AuthError> {
        let checked = self.check(header, now)?;
        Ok((checked.actor, checked.scopes.unwrap_or_else(Scopes::none)))
    }

    /// The caller and scopes of the token in `header`, from the remembered tokens or
    /// verified in full.
    fn check(&self, header: Option<&str>, now: DateTime<Utc>) -> Result<Checked, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now.timestamp();
        if let Some(checked) = self.remembered(&digest, now) {
            return Ok(checked);
        }
        let checked = self.verify(token, now)?;
        self.remember(digest, checked.clone(), now);
        Ok(checked)
    }

    /// What a token verified before and not yet expired at `now` says.
    fn remembered(&self, digest: &[u8; 32], now: i64) -> Option<Checked> {
        let verified = self.verified.lock().expect("not poisoned");
        verified
            .get(digest)
            .filter(|checked| now <= checked.until)
            .cloned()
    }

    fn remember(&self, digest: [u8; 32], checked: Checked, now: i64) {
        let mut verified = self.verified.lock().expect("not poisoned");
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, c| now <= c.until);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(digest, checked);
    }

    /// Checks the token's signature and claims against the verifying keys (those whose
    /// `kid` the token names, when it names one); returns what the token says, accepted
    /// until its `exp` and the leeway.
    fn verify(&self, token: &str, now: i64) -> Result<Checked, AuthError> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Rejected("malformed token".into()))?
            .kid;
        let keys = self.verifying.read().expect("not poisoned").clone();
        let mut last = AuthError::Rejected("no verifying key for this token".into());
        let candidates = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid == kid);
        for candidate in candidates {
            let mut validation = Validation::new(candidate.alg);
            validation.set_issuer(&self.policy.issuers);
            let mut required = vec!["exp", "sub", "iss"];
            // With no audience configured, jsonwebtoken refuses a token that names
            // one: it was meant for another service.
            if let Some(audience) = &self.policy.audience {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            validation.set_required_spec_claims(&required);
            // Times are checked below against the injected clock, not the wall clock.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
                Ok(data) => return self.accept(data.claims, now),
                Err(e) => last = refusal(e.kind()),
            }
        }
        Err(last)
    }

    /// The caller of a token whose signature verified, if its times and claims are
    /// acceptable at `now`.
    fn accept(&self, claims: Claims, now: i64) -> Result<Checked, AuthError> {
        if claims.exp + LEEWAY_SECS < now {
            return Err(AuthError::Expired);
        }
        let starts = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
        if starts - LEEWAY_SECS > now {
            return Err(AuthError::NotYetValid);
        }
        if claims.exp - claims.iat > self.policy.max_lifetime.num_seconds() {
            return Err(AuthError::TooLong(self.policy.max_lifetime.num_hours()));
        }
        let role = Role::parse(&claims.role)
            .map_err(|_| AuthError::Rejected("the role claim names no carepath role".into()))?;
        let actor = Actor::new(role, claims.sub).map_err(|_| {
            AuthError::Rejected(format!(
                "the subject is not the kind of id a {} is known by",
                role.as_str()
            ))
        })?;
        let scopes = claims
            .scope
            .as_deref()
            .map(Scopes::parse)
            .transpose()
            .map_err(|_| AuthError::Rejected("the scope claim is not understood".into()))?;
        Ok(Checked {
            actor,
            scopes,
            until: claims.exp + LEEWAY_SECS,
        })
    }
}

/// A refusal in fixed words for a token that did not decode or verify: nothing of the
/// token or of the parser's message goes back to the caller.
fn refusal(kind: &ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::ImmatureSignature => return AuthError::NotYetValid,
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidIssuer => "issuer not accepted",
        ErrorKind::InvalidAudience => "audience not accepted",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "the exp claim is missing",
            "sub" => "the sub claim is missing",
            "iss" => "the iss claim is missing",
            "aud" => "the aud claim is missing",
            _ => "a required claim is missing",
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
            "the claims are not what a carepath token carries (sub, role, iss, iat, exp)"
        }
        _ => "malformed token",
    };
    AuthError::Rejected(reason.into())
}

/// The signing keys of a JSON Web Key Set: RSA (RS256, or the algorithm the key
/// names), P-256 and P-384 (ES256, ES384) and Ed25519 (EdDSA); keys for encryption
/// are skipped. An empty result is an error: nothing could be verified.
fn keys_of_set(json: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Algorithm::RS384,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Algorithm::RS512,
            (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Algorithm::PS256,
            (AlgorithmParameters::RSA(_), _) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), _) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            (AlgorithmParameters::EllipticCurve(ec), _) if ec.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            (AlgorithmParameters::OctetKeyPair(_), _) => Algorithm::EdDSA,
            // Shared secrets and other curves are not accepted from a published set.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key {:?} is not usable: {e}",
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )
        })?;
        keys.push(VerifyingKey {
            alg,
            kid: jwk.common.key_id.clone(),
            key,
        });
    }
    if keys.is_empty() {
        return Err("the key set has no RSA, P-256, P-384 or Ed25519 signing key".into());
    }
    Ok(keys)
}

/// Fetches and reads the key set at `url` (10 s at most).
async fn fetch_jwks(url: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    let failed = |reason: String| KeyError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    keys_of_set(&body).map_err(failed)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock's reading in these tests.
    fn t0() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn provider() -> Actor {
        Actor::new(Role::Provider, "1234567893").unwrap()
    }

    #[test]
    fn a_minted_token_authenticates_as_its_actor() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let token = auth
            .mint(&provider(), t0(), chrono::Duration::hours(1))
            .unwrap();
        let actor = auth
            .authenticate(Some(&format!("Bearer {token}")), t0())
            .unwrap();
        assert_eq!(actor, provider());
    }

    #[test]
    fn the_key_is_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let first = Authenticator::with_local_key(&path).unwrap();
        let token = first
            .mint(&provider(), t0(), chrono::Duration::hours(1))
            .unwrap();
        let second = Authenticator::with_local_key(&path).unwrap();
        assert!(
            second
                .authenticate(Some(&format!("Bearer {token}")), t0())
                .is_ok()
        );
    }

    #[test]
    fn expired_foreign_and_malformed_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("a.pem")).unwrap();
        let other = Authenticator::with_local_key(&dir.path().join("b.pem")).unwrap();
        let expired = auth
            .mint(
                &provider(),
                t0() - chrono::Duration::hours(2),
                chrono::Duration::hours(1),
            )
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {expired}")), t0()),
            Err(AuthError::Expired)
        ));
        let foreign = other
            .mint(&provider(), t0(), chrono::Duration::hours(1))
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {foreign}")), t0()),
            Err(AuthError::Rejected(_))
        ));
        assert!(matches!(
            auth.authenticate(None, t0()),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            auth.authenticate(Some("Basic abc"), t0()),
            Err(AuthError::Malformed)
        ));
    }

    #[test]
    fn a_remembered_token_is_its_caller_until_it_expires_and_no_other_text_is() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let now = t0();
        let token = auth
            .mint(&provider(), now, chrono::Duration::minutes(5))
            .unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(auth.authenticate(Some(&bearer), t0()).unwrap(), provider());
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let exp = (now + chrono::Duration::minutes(5)).timestamp();
        let remembered = |at: i64| auth.remembered(&digest, at).map(|c| c.actor);
        assert_eq!(remembered(now.timestamp()), Some(provider()));
        assert_eq!(remembered(exp + LEEWAY_SECS), Some(provider()));
        assert_eq!(remembered(exp + LEEWAY_SECS + 1), None, "expired");

        // One character of the signature changed: not the remembered text, refused.
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert!(matches!(
            auth.authenticate(Some(&format!("Bearer {forged}")), t0()),
            Err(AuthError::Rejected(_))
        ));
        // Nor does a refused token become remembered.
        let digest: [u8; 32] = Sha256::digest(forged.as_bytes()).into();
        assert!(auth.remembered(&digest, now.timestamp()).is_none());
    }

    #[test]
    fn remembering_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        for i in 0..(MAX_VERIFIED + 10) {
            let digest: [u8; 32] = Sha256::digest(i.to_string().as_bytes()).into();
            let checked = Checked {
                actor: provider(),
                scopes: None,
                until: 2_000_000_000,
            };
            auth.remember(digest, checked, 1_900_000_000);
        }
        assert!(auth.verified.lock().unwrap().len() <= MAX_VERIFIED);
    }

    #[test]
    fn public_keys_verify_but_cannot_mint() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let key =
            SigningKey::from_pkcs8_pem(&std::fs::read_to_string(dir.path().join("k.pem")).unwrap())
                .unwrap();
        let public = dir.path().join("pub.pem");
        std::fs::write(
            &public,
            key.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let verifier = Authenticator::with_public_keys(&[public]).unwrap();
        let token = signer
            .mint(&provider(), t0(), chrono::Duration::hours(1))
            .unwrap();
        assert!(
            verifier
                .authenticate(Some(&format!("Bearer {token}")), t0())
                .is_ok()
        );
        assert!(matches!(
            verifier.mint(&provider(), t0(), chrono::Duration::hours(1)),
            Err(KeyError::NoSigningKey)
        ));
    }

    #[test]
    fn a_scoped_token_carries_its_scopes_and_only_the_scoped_check_accepts_it() {
        use crate::smart::Access;
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let token = auth
            .mint_scoped(
                &provider(),
                t0(),
                chrono::Duration::minutes(5),
                "system/Claim.cr",
                "ehr-1",
            )
            .unwrap();
        let bearer = format!("Bearer {token}");
        // Twice: verified in full, then remembered; the answer is the same.
        for _ in 0..2 {
            let (actor, scopes) = auth.authenticate_scoped(Some(&bearer), t0()).unwrap();
            assert_eq!(actor, provider());
            assert!(scopes.allows("Claim", Access::Create));
            assert!(!scopes.allows("Claim", Access::Update));
            assert!(matches!(
                auth.authenticate(Some(&bearer), t0()),
                Err(AuthError::Scoped)
            ));
        }
        let claims: Claims = jsonwebtoken::dangerous::insecure_decode(&token)
            .unwrap()
            .claims;
        assert_eq!(claims.client_id.as_deref(), Some("ehr-1"));
    }

    #[test]
    fn a_plain_token_has_no_scope_claims_and_no_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let token = auth
            .mint(&provider(), t0(), chrono::Duration::hours(1))
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let json =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        let text = String::from_utf8(json).unwrap();
        assert!(
            !text.contains("scope") && !text.contains("client_id"),
            "{text}"
        );
        let (_, scopes) = auth
            .authenticate_scoped(Some(&format!("Bearer {token}")), t0())
            .unwrap();
        assert!(scopes.is_empty());
    }

    /// `claims` signed with `auth`'s key, with `kid` in the header when given.
    fn signed(auth: &Authenticator, claims: serde_json::Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, auth.signing.as_ref().unwrap()).unwrap()
    }

    /// A provider's claims issued at `iat` for `hours`.
    fn claims(iat: DateTime<Utc>, hours: i64) -> serde_json::Value {
        serde_json::json!({
            "sub": "1234567893",
            "role": "provider",
            "iss": ISSUER,
            "iat": iat.timestamp(),
            "exp": (iat + chrono::Duration::hours(hours)).timestamp(),
        })
    }

    fn check(auth: &Authenticator, token: &str) -> Result<Actor, AuthError> {
        auth.authenticate(Some(&format!("Bearer {token}")), t0())
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let ahead = |secs| t0() + chrono::Duration::seconds(secs);
        // Issued in the future.
        let future = signed(&auth, claims(ahead(3600), 1), None);
        assert!(matches!(check(&auth, &future), Err(AuthError::NotYetValid)));
        // Issued a little ahead of our clock: skew, accepted.
        let skewed = signed(&auth, claims(ahead(LEEWAY_SECS), 1), None);
        assert!(check(&auth, &skewed).is_ok());
        // Not before an hour from now.
        let mut later = claims(t0(), 2);
        later["nbf"] = ahead(3600).timestamp().into();
        let later = signed(&auth, later, None);
        assert!(matches!(check(&auth, &later), Err(AuthError::NotYetValid)));
        let mut now = claims(t0(), 2);
        now["nbf"] = t0().timestamp().into();
        assert!(check(&auth, &signed(&auth, now, None)).is_ok());
    }

    #[test]
    fn a_token_living_longer_than_the_cap_is_refused_and_not_minted() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let centuries = signed(&auth, claims(t0(), 200 * 365 * 24), None);
        let refused = check(&auth, &centuries).unwrap_err();
        assert!(matches!(refused, AuthError::TooLong(24)), "{refused}");
        let day = signed(&auth, claims(t0(), 24), None);
        assert!(check(&auth, &day).is_ok());
        assert!(matches!(
            auth.mint(&provider(), t0(), chrono::Duration::hours(25)),
            Err(KeyError::TooLong { asked: 25, cap: 24 })
        ));
        let longer = auth.with_policy(TokenPolicy {
            max_lifetime: chrono::Duration::days(365 * 300),
            ..TokenPolicy::default()
        });
        assert!(check(&longer, &centuries).is_ok());
    }

    #[test]
    fn the_configured_audience_and_issuers_are_required() {
        let dir = tempfile::tempdir().unwrap();
        let plain = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let idp = "https://login.plan.example";
        let policy = TokenPolicy {
            issuers: vec![idp.to_owned()],
            audience: Some("carepath-api".to_owned()),
            ..TokenPolicy::default()
        };
        let auth = plain.clone().with_policy(policy);
        let from = |iss: &str, aud: Option<&str>| {
            let mut c = claims(t0(), 1);
            c["iss"] = iss.into();
            if let Some(aud) = aud {
                c["aud"] = aud.into();
            }
            signed(&auth, c, None)
        };
        assert!(check(&auth, &from(idp, Some("carepath-api"))).is_ok());
        for (token, reason) in [
            (from(idp, None), "the aud claim is missing"),
            (from(idp, Some("another-api")), "audience not accepted"),
            (from(ISSUER, Some("carepath-api")), "issuer not accepted"),
        ] {
            let refused = check(&auth, &token).unwrap_err().to_string();
            assert!(refused.ends_with(reason), "{refused}");
        }
        // With no audience configured, a token meant for some audience is refused.
        let refused = check(&plain, &from(ISSUER, Some("carepath-api"))).unwrap_err();
        assert!(refused.to_string().ends_with("audience not accepted"));
    }

    #[test]
    fn refusals_do_not_echo_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let mut odd_role = claims(t0(), 1);
        odd_role["role"] = "<script>x".repeat(1000).into();
        let mut odd_subject = claims(t0(), 1);
        odd_subject["sub"] = "AAAA".repeat(1000).into();
        let mut odd_claim = claims(t0(), 1);
        odd_claim["exp"] = "next tuesday".into();
        for token in [
            signed(&auth, odd_role, None),
            signed(&auth, odd_subject, None),
            signed(&auth, odd_claim, None),
            "not-a-jwt".to_owned(),
            format!("e30.{}.e30", "A".repeat(10_000)),
        ] {
            let refused = check(&auth, &token).unwrap_err().to_string();
            assert!(refused.len() < 120, "{refused}");
            for echoed in [
                "script",
                "AAAA",
                "tuesday",
                "not-a-jwt",
                "Base64",
                "Json",
                "line",
            ] {
                assert!(!refused.contains(echoed), "{refused}");
            }
        }
    }

    /// An Ed25519 key set as an OIDC provider publishes it, for the key in `pem`.
    fn key_set(pem: &Path, kid: &str) -> String {
        use base64::Engine;
        let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(pem).unwrap()).unwrap();
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},
        ]})
        .to_string()
    }

    #[test]
    fn keys_come_from_a_key_set_and_a_token_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("idp.pem");
        let idp = Authenticator::with_local_key(&pem).unwrap();
        let set = dir.path().join("jwks.json");
        std::fs::write(&set, key_set(&pem, "2026-12")).unwrap();
        let auth = Authenticator::with_jwks_file(&set).unwrap();
        assert_eq!(
            auth.verifying.read().unwrap().len(),
            1,
            "the shared secret is skipped"
        );
        let token = signed(&idp, claims(t0(), 1), Some("2026-12"));
        assert_eq!(check(&auth, &token).unwrap(), provider());
        let unknown = signed(&idp, claims(t0(), 1), Some("2025-01"));
        let refused = check(&auth, &unknown).unwrap_err().to_string();
        assert!(
            refused.ends_with("no verifying key for this token"),
            "{refused}"
        );
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
        assert!(matches!(
            Authenticator::with_jwks_file(&empty),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[test]
    fn staff_confirmations_expire() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::with_local_key(&dir.path().join("k.pem")).unwrap();
        let nurse = Actor::new(Role::Nurse, "RN-001").unwrap();
        assert!(!auth.staff_confirmed(&nurse, t0()));
        auth.confirm_staff(&nurse, t0());
        let later = |secs| t0() + chrono::Duration::seconds(secs);
        assert!(auth.staff_confirmed(&nurse, later(STAFF_CONFIRMATION_SECS)));
        assert!(!auth.staff_confirmed(&nurse, later(STAFF_CONFIRMATION_SECS + 1)));
    }
}
