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
    sync::{Arc, Mutex},
};

use carepath_core::{Actor, Role};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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
}

/// The claims of a carepath token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// The SMART scopes granted, space-separated; only on tokens of FHIR
    /// backend-service clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The FHIR backend-service client the token was granted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Seconds past `exp` a token is still accepted (clock skew between issuer and us).
const LEEWAY_SECS: i64 = 30;
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
    verifying: Vec<(Algorithm, DecodingKey)>,
    verified: Arc<Mutex<Verified>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("can_sign", &self.signing.is_some())
            .field("verifying_keys", &self.verifying.len())
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
        Ok(Authenticator {
            signing: Some(EncodingKey::from_ed_der(der.as_bytes())),
            verifying: vec![(Algorithm::EdDSA, verifying)],
            verified: Arc::default(),
        })
    }

    /// Verifies with the given public keys only (PEM files, Ed25519 or RSA); cannot
    /// mint tokens.
    pub fn with_public_keys(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut verifying = Vec::new();
        for path in paths {
            let pem = read(path)?;
            if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                verifying.push((Algorithm::EdDSA, key));
            } else {
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map_err(|_| invalid(path, "expected an Ed25519 or RSA public key in PEM"))?;
                verifying.push((Algorithm::RS256, key));
            }
        }
        Ok(Authenticator {
            signing: None,
            verifying,
            verified: Arc::default(),
        })
    }

    /// Mints a token for `actor`, valid from `now` for `ttl`.
    pub fn mint(
        &self,
        actor: &Actor,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, KeyError> {
        self.sign(Claims {
            sub: actor.subject.clone(),
            role: actor.role.as_str().to_owned(),
            iss: ISSUER.to_owned(),
            iat: now.timestamp(),
            exp: (now + ttl).timestamp(),
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

    /// Checks the token's signature and claims against each verifying key; returns
    /// what the token says, accepted until its `exp` and the leeway.
    fn verify(&self, token: &str, now: i64) -> Result<Checked, AuthError> {
        let mut last = AuthError::Rejected("no verifying key configured".into());
        for (alg, key) in &self.verifying {
            let mut validation = Validation::new(*alg);
            validation.set_issuer(&[ISSUER]);
            validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            // Expiry is checked below against the injected clock, not the wall clock.
            validation.validate_exp = false;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    if data.claims.exp + LEEWAY_SECS < now {
                        return Err(AuthError::Expired);
                    }
                    let role = Role::parse(&data.claims.role).map_err(|_| {
                        AuthError::Rejected(format!("unknown role {:?}", data.claims.role))
                    })?;
                    let actor = Actor::new(role, data.claims.sub).map_err(|e| {
                        AuthError::Rejected(format!("subject does not fit the role: {e}"))
                    })?;
                    let scopes = data
                        .claims
                        .scope
                        .as_deref()
                        .map(Scopes::parse)
                        .transpose()
                        .map_err(|e| AuthError::Rejected(e.to_string()))?;
                    return Ok(Checked {
                        actor,
                        scopes,
                        until: data.claims.exp + LEEWAY_SECS,
                    });
                }
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                            AuthError::Rejected("bad signature".into())
                        }
                        _ => AuthError::Rejected(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }
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
}
