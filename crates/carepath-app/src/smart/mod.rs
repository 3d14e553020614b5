//! SMART backend services: the registry of FHIR clients and the token exchange.
//!
//! A client (an EHR, a clearinghouse) acts for one provider of the directory. An
//! admin registers it with its public keys (a JSON Web Key Set) and the scopes it may
//! be granted. To call the FHIR API the client signs a short-lived assertion with its
//! private key and exchanges it ([`Smart::exchange`]) for a carepath access token: a
//! provider token for the client's NPI, limited to the scopes granted and valid for
//! five minutes. Each assertion is accepted once; the ids of used assertions are
//! kept in the database, so a replay is refused whichever process it reaches.
//!
//! Every registration and every exchange, granted or refused, is audited.

pub mod client;
pub mod scopes;

use carepath_core::{Actor, Invalid, Npi, Role};
use carepath_store::{AuditOutcome, FhirClientRecord, StoreError};
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use serde::Deserialize;
use serde_json::Value;

pub use scopes::{Access, Scope, ScopeError, Scopes};

use crate::{App, AppError, AppResult, Caller, Page, PageRequest};

/// The audit log's record kind of a FHIR client.
pub const CLIENT_RECORD_KIND: &str = "fhir_client";
/// The operation the audit log names for a token exchange.
pub const TOKEN_OPERATION: &str = "smart/token";
/// The only grant type of backend services.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// The client assertion type of backend services.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Scopes the command line registers a client with when none are given: submit and
/// inquire on claims, manage subscriptions, and read questionnaires.
pub const DEFAULT_CLIENT_SCOPES: &str =
    "system/Claim.crs system/ClaimResponse.rs system/Subscription.crds system/Questionnaire.rs";

/// Longest client id.
pub const MAX_CLIENT_ID_LEN: usize = 64;
/// Longest client name.
pub const MAX_CLIENT_NAME_LEN: usize = 200;
/// Largest key set, as JSON text.
pub const MAX_JWKS_BYTES: usize = 16 * 1024;
/// Most keys in a client's key set (room to roll keys over).
pub const MAX_KEYS: usize = 10;
/// Longest key id.
pub const MAX_KID_LEN: usize = 128;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest client assertion accepted, in bytes.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// Longest assertion id (`jti`).
pub const MAX_JTI_LEN: usize = 256;
/// How far ahead of now an assertion's `exp` may be.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Seconds of clock difference between a client and us that are tolerated.
pub const ASSERTION_LEEWAY_SECS: i64 = 30;
/// How long an access token lives.
pub const ACCESS_TOKEN_SECS: i64 = 300;
/// The operation the audit log names for a refused CDS Hooks call.
pub const HOOK_AUTH_OPERATION: &str = "cds-hooks/authenticate";

/// Base64url without padding, as JSON Web Keys spell numbers.
pub(crate) const BASE64URL: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A client to register, or to replace the one registered under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterClient {
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`: the `iss` and `sub` of the client's assertions.
    pub client_id: String,
    /// Who the client is, for people.
    pub name: String,
    /// The NPI of the provider of the directory the client acts for.
    pub npi: String,
    /// The client's public keys: a JSON Web Key Set of RSA (2048 bits or more) or
    /// P-384 EC keys, each with a `kid`.
    pub jwks: String,
    /// The `system/` scopes the client may be granted, space-separated.
    pub scopes: String,
    /// False to register the client disabled: its assertions are refused.
    pub active: bool,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirClient {
    /// The client's id.
    pub client_id: String,
    /// Who the client is, for people.
    pub name: String,
    /// The provider the client acts for; its tokens name this NPI.
    pub npi: Npi,
    /// The client's public keys.
    pub jwks: Value,
    /// The scopes the client may be granted.
    pub scopes: Scopes,
    /// Whether the client may get tokens.
    pub active: bool,
    /// When it was registered or last replaced.
    pub registered_at: DateTime<Utc>,
    /// Who registered or last replaced it.
    pub registered_by: String,
}

/// A token request to the token endpoint, its form fields as sent (absent ones
/// empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: String,
    /// Must be [`JWT_BEARER`].
    pub client_assertion_type: String,
    /// The signed assertion (a JWT).
    pub client_assertion: String,
    /// The scopes asked for, space-separated; empty asks for every registered one.
    pub scope: String,
}

/// An access token granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The bearer token to send to the FHIR API.
    pub access_token: String,
    /// Seconds the token lives.
    pub expires_in: i64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// Why a token request was refused: an OAuth 2.0 error code with a description safe
/// to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A parameter is missing or malformed.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The client or its assertion failed authentication.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// The grant is not valid.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// A scope asked for is malformed or not registered for the client.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// The grant type is not `client_credentials`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// A failure on our side (the database, the signing key): the cause is for the
    /// log; the client is told only that the server failed.
    #[error("server_error: {0}")]
    Internal(String),
}

impl TokenError {
    /// The OAuth 2.0 `error` code (`server_error` for [`TokenError::Internal`]).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::Internal(_) => "server_error",
        }
    }

    /// The `error_description` to send: never an internal cause.
    pub fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient(d)
            | TokenError::InvalidGrant(d)
            | TokenError::InvalidScope(d)
            | TokenError::UnsupportedGrantType(d) => d,
            TokenError::Internal(_) => "the server could not complete the request",
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Internal(e.to_string())
    }
}

fn invalid_client(description: impl Into<String>) -> TokenError {
    TokenError::InvalidClient(description.into())
}

/// The claims read from an assertion before its signature is checked: enough to
/// find the client.
#[derive(Debug, Deserialize)]
struct Unverified {
    iss: Option<String>,
    sub: Option<String>,
}

/// The claims of a verified assertion this module uses.
#[derive(Debug, Deserialize)]
struct Verified {
    exp: i64,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// A CDS client authenticated for one hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookClient {
    /// The provider the client acts for.
    pub actor: Actor,
    /// The client's id.
    pub client_id: String,
}

/// Who may issue a client's JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerRule {
    /// A client assertion: `iss` and `sub` are both the client id.
    SameAsSubject,
    /// A CDS Hooks call: `sub` is the client id; `iss` names the issuer (often the
    /// client's FHIR server).
    AnyIssuer,
}

/// A verified JWT: the client that signed it and the `jti` to record.
#[derive(Debug)]
struct VerifiedJwt {
    client: FhirClientRecord,
    jti: String,
    /// When the JWT stops being accepted (so its `jti` may be forgotten).
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// Who an exchange is audited as: the client's provider once the client is known.
#[derive(Debug, Default)]
struct Attempt {
    claimed: String,
    npi: Option<String>,
}

/// The SMART backend-services use cases.
#[derive(Debug, Clone)]
pub struct Smart {
    app: App,
}

impl Smart {
    /// The use cases over `app`.
    pub fn new(app: App) -> Self {
        Smart { app }
    }

    /// Registers a client, or replaces the one registered under the same id (admins
    /// and internal services). Every field is checked, and the NPI must be a provider
    /// of the directory, before anything is written.
    pub async fn register_client(
        &self,
        caller: &Caller,
        req: RegisterClient,
    ) -> AppResult<FhirClient> {
        let record_id: String = req.client_id.chars().take(MAX_CLIENT_ID_LEN).collect();
        if !matches!(caller.actor.role, Role::Admin | Role::Service) {
            let err = AppError::denied("registering FHIR clients is for admins");
            return Err(self
                .app
                .refuse(caller, CLIENT_RECORD_KIND, &record_id, None, err)
                .await);
        }
        let mut invalid = Invalid::new();
        if !valid_client_id(&req.client_id) {
            invalid.push(
                "client_id",
                format!("must be 1 to {MAX_CLIENT_ID_LEN} of A-Z a-z 0-9 . _ -"),
            );
        }
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_CLIENT_NAME_LEN {
            invalid.push(
                "name",
                format!("must be 1 to {MAX_CLIENT_NAME_LEN} characters"),
            );
        }
        let npi = invalid.check("npi", Npi::parse(req.npi.trim()));
        let jwks = check_jwks(&req.jwks, &mut invalid);
        let scopes = match Scopes::parse(&req.scopes) {
            Ok(s) if s.is_empty() => {
                invalid.push("scopes", "at least one system/ scope");
                None
            }
            Ok(s) => Some(s),
            Err(e) => {
                invalid.push("scopes", e.to_string());
                None
            }
        };
        if let Some(npi) = &npi {
            match self.app.store.get_provider(npi).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    invalid.push("npi", "no provider with this NPI in the directory")
                }
                Err(e) => return Err(e.into()),
            }
        }
        invalid.into_result()?;
        let (Some(npi), Some(jwks), Some(scopes)) = (npi, jwks, scopes) else {
            return Err(AppError::Internal("checked fields missing".into()));
        };
        let now = self.app.stored_now();
        let record = FhirClientRecord {
            client_id: req.client_id.clone(),
            name: name.to_owned(),
            npi: npi.as_str().to_owned(),
            jwks: jwks.to_string(),
            scopes: scopes.to_string(),
            active: req.active,
            registered_at: now,
            registered_by: caller.actor.subject.clone(),
        };
        let mut tx = self.app.store.begin().await?;
        tx.upsert_fhir_client(&record).await?;
        tx.append_audit(
            &caller.audit_entry(
                CLIENT_RECORD_KIND,
                &record.client_id,
                None,
                AuditOutcome::Allowed,
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(FhirClient {
            client_id: record.client_id,
            name: record.name,
            npi,
            jwks,
            scopes,
            active: record.active,
            registered_at: now,
            registered_by: record.registered_by,
        })
    }

    /// One page of the registered clients, by id (admins).
    pub async fn list_clients(
        &self,
        caller: &Caller,
        page: PageRequest,
    ) -> AppResult<Page<FhirClient>> {
        caller.require_role(&[Role::Admin], "listing FHIR clients")?;
        let size = page.checked_size("page_size")?;
        let rows = self.app.store.list_fhir_clients(&page.token, size).await?;
        let items = rows
            .items
            .into_iter()
            .map(client_of)
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_page_token: rows.next_page_token.unwrap_or_default(),
        })
    }

    /// Exchanges a client assertion for an access token (SMART backend services,
    /// `client_credentials` with a `private_key_jwt` assertion). `token_url` is the
    /// token endpoint as the server publishes it: the assertion's `aud` must be
    /// exactly that. Every exchange is audited, granted or refused.
    pub async fn exchange(
        &self,
        req: TokenRequest,
        token_url: &str,
    ) -> Result<TokenGrant, TokenError> {
        let mut attempt = Attempt::default();
        let result = self.try_exchange(&req, token_url, &mut attempt).await;
        self.audit_refusal(result, &attempt, TOKEN_OPERATION).await
    }

    /// Audits a refused exchange or hook call (as the client when it is known) and
    /// logs a failure on our side; passes the result on.
    async fn audit_refusal<T>(
        &self,
        result: Result<T, TokenError>,
        attempt: &Attempt,
        operation: &str,
    ) -> Result<T, TokenError> {
        if let Err(err) = &result {
            let entry = attempt_entry(attempt, AuditOutcome::Denied, operation);
            if let Err(audit_err) = self.app.store.audit(&entry, self.app.now()).await {
                return Err(audit_err.into());
            }
            if let TokenError::Internal(cause) = err {
                tracing::error!(%cause, operation, "client authentication failed");
            }
        }
        result
    }

    /// Authenticates a CDS Hooks call: `authorization` is the request's
    /// `Authorization` header, `Bearer` and a JWT the CDS client signed for
    /// `service_url` (the hook's endpoint) with one of its registered keys, `sub`
    /// being its client id. Each JWT is accepted once. The caller is the client's
    /// provider; a refusal is audited.
    pub async fn authenticate_hook(
        &self,
        authorization: Option<&str>,
        service_url: &str,
    ) -> Result<HookClient, TokenError> {
        let mut attempt = Attempt::default();
        let result = self
            .try_authenticate_hook(authorization, service_url, &mut attempt)
            .await;
        self.audit_refusal(result, &attempt, HOOK_AUTH_OPERATION)
            .await
    }

    async fn try_authenticate_hook(
        &self,
        authorization: Option<&str>,
        service_url: &str,
        attempt: &mut Attempt,
    ) -> Result<HookClient, TokenError> {
        let jwt = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                invalid_client("send Authorization: Bearer and a JWT signed by the CDS client")
            })?;
        let VerifiedJwt {
            client,
            jti,
            expires_at,
            now,
        } = self
            .verify_jwt(jwt, service_url, IssuerRule::AnyIssuer, attempt)
            .await?;
        let actor = Actor::new(Role::Provider, client.npi.clone()).map_err(|e| {
            TokenError::Internal(format!("stored npi of {}: {e}", client.client_id))
        })?;
        let mut tx = self.app.store.begin().await?;
        if !tx
            .record_client_assertion(&client.client_id, &jti, expires_at, now)
            .await?
        {
            return Err(invalid_client(
                "the JWT was used before: each jti is accepted once",
            ));
        }
        tx.commit().await?;
        Ok(HookClient {
            actor,
            client_id: client.client_id,
        })
    }

    async fn try_exchange(
        &self,
        req: &TokenRequest,
        token_url: &str,
        attempt: &mut Attempt,
    ) -> Result<TokenGrant, TokenError> {
        if req.grant_type.is_empty() {
            return Err(TokenError::InvalidRequest("grant_type is required".into()));
        }
        if req.grant_type != CLIENT_CREDENTIALS {
            return Err(TokenError::UnsupportedGrantType(format!(
                "only {CLIENT_CREDENTIALS} is supported"
            )));
        }
        if req.client_assertion_type != JWT_BEARER {
            return Err(TokenError::InvalidRequest(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        if req.client_assertion.is_empty() {
            return Err(TokenError::InvalidRequest(
                "client_assertion is required".into(),
            ));
        }
        if req.client_assertion.len() > MAX_ASSERTION_BYTES {
            return Err(TokenError::InvalidRequest(format!(
                "client_assertion is longer than {MAX_ASSERTION_BYTES} bytes"
            )));
        }
        let VerifiedJwt {
            client,
            jti,
            expires_at,
            now,
        } = self
            .verify_jwt(
                &req.client_assertion,
                token_url,
                IssuerRule::SameAsSubject,
                attempt,
            )
            .await?;
        let iss = client.client_id.as_str();
        let registered = Scopes::parse(&client.scopes).map_err(|e| {
            TokenError::Internal(format!("stored scopes of {iss} cannot be read: {e}"))
        })?;
        let requested =
            Scopes::parse(&req.scope).map_err(|e| TokenError::InvalidScope(e.to_string()))?;
        if let Some(refused) = requested.iter().find(|s| !registered.grants(s)) {
            return Err(TokenError::InvalidScope(format!(
                "{} is not registered for this client",
                refused.as_str()
            )));
        }
        let granted = if requested.is_empty() {
            registered
        } else {
            requested
        }
        .to_string();
        let actor = Actor::new(Role::Provider, client.npi.clone())
            .map_err(|e| TokenError::Internal(format!("stored npi of {iss}: {e}")))?;
        let access_token = self
            .app
            .auth
            .mint_scoped(
                &actor,
                now,
                chrono::Duration::seconds(ACCESS_TOKEN_SECS),
                &granted,
                &client.client_id,
            )
            .map_err(|e| TokenError::Internal(e.to_string()))?;
        let mut tx = self.app.store.begin().await?;
        if !tx
            .record_client_assertion(&client.client_id, &jti, expires_at, now)
            .await?
        {
            return Err(invalid_client(
                "the client assertion was used before: each jti is accepted once",
            ));
        }
        tx.append_audit(
            &attempt_entry(attempt, AuditOutcome::Allowed, TOKEN_OPERATION),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(TokenGrant {
            access_token,
            expires_in: ACCESS_TOKEN_SECS,
            scope: granted,
        })
    }
    /// Verifies a JWT a registered client signed for `audience` (a client assertion
    /// at the token endpoint, or a CDS Hooks call): the client named by `sub` is
    /// known and active, the signature verifies with one of its keys (RS384 or
    /// ES384, by `kid`), the audience matches, `exp` is at most five minutes ahead
    /// and not past, `nbf` is not ahead, and there is a `jti`. The `jti` is not
    /// recorded here: the caller records it with what the JWT is used for.
    async fn verify_jwt(
        &self,
        jwt: &str,
        audience: &str,
        issuer: IssuerRule,
        attempt: &mut Attempt,
    ) -> Result<VerifiedJwt, TokenError> {
        let assertion = jwt;
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(TokenError::InvalidRequest(format!(
                "the JWT is longer than {MAX_ASSERTION_BYTES} bytes"
            )));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| invalid_client("client_assertion is not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(invalid_client(
                "the client assertion must be signed with RS384 or ES384",
            ));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid_client("the client assertion's header has no kid"))?;
        let unverified: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
            .map_err(|_| invalid_client("the client assertion's claims cannot be read"))?;
        let (Some(iss), Some(sub)) = (unverified.iss, unverified.sub) else {
            return Err(invalid_client(
                "the client assertion needs iss and sub (the client id)",
            ));
        };
        if issuer == IssuerRule::SameAsSubject && iss != sub {
            return Err(invalid_client(
                "the client assertion's iss and sub must both be the client id",
            ));
        }
        if !valid_client_id(&sub) {
            return Err(invalid_client("unknown client"));
        }
        attempt.claimed = sub.clone();
        let client = match self.app.store.get_fhir_client(&sub).await {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => return Err(invalid_client("unknown client")),
            Err(e) => return Err(e.into()),
        };
        attempt.npi = Some(client.npi.clone());
        if !client.active {
            return Err(invalid_client("the client is disabled"));
        }
        let jwks: JwkSet = serde_json::from_str(&client.jwks).map_err(|e| {
            TokenError::Internal(format!("stored key set of {sub} cannot be read: {e}"))
        })?;
        let jwk = jwks
            .find(&kid)
            .ok_or_else(|| invalid_client(format!("the client has no key with kid {kid:?}")))?;
        let fits = match (&jwk.algorithm, header.alg) {
            (AlgorithmParameters::RSA(_), Algorithm::RS384) => true,
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
                ec.curve == EllipticCurve::P384
            }
            _ => false,
        };
        if !fits {
            return Err(invalid_client(format!(
                "the key {kid:?} does not sign {:?}",
                header.alg
            )));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            TokenError::Internal(format!("stored key {kid:?} of {sub} is not usable: {e}"))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[iss.as_str()]);
        validation.sub = Some(sub.clone());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // Times are checked below against the application's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let verified = jsonwebtoken::decode::<Verified>(assertion, &key, &validation)
            .map_err(|e| {
                invalid_client(match e.kind() {
                    ErrorKind::InvalidSignature => {
                        "the client assertion's signature does not verify".to_owned()
                    }
                    ErrorKind::InvalidAudience => {
                        format!("the client assertion's aud must be {audience}")
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the client assertion has no {claim}")
                    }
                    _ => format!("the client assertion is not valid: {e}"),
                })
            })?
            .claims;
        let now = self.app.stored_now();
        let at = now.timestamp();
        if verified.exp + ASSERTION_LEEWAY_SECS < at {
            return Err(invalid_client("the client assertion has expired"));
        }
        if verified.exp > at + MAX_ASSERTION_LIFETIME_SECS + ASSERTION_LEEWAY_SECS {
            return Err(invalid_client(
                "the client assertion's exp must be at most 5 minutes ahead",
            ));
        }
        if verified
            .nbf
            .is_some_and(|nbf| nbf > at + ASSERTION_LEEWAY_SECS)
        {
            return Err(invalid_client("the client assertion is not valid yet"));
        }
        let jti = verified
            .jti
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
            .ok_or_else(|| {
                invalid_client(format!(
                    "the client assertion needs a jti of 1 to {MAX_JTI_LEN} characters"
                ))
            })?;
        let expires_at = DateTime::from_timestamp(verified.exp + ASSERTION_LEEWAY_SECS, 0)
            .ok_or_else(|| invalid_client("the client assertion's exp is out of range"))?;
        Ok(VerifiedJwt {
            client,
            jti,
            expires_at,
            now,
        })
    }
}

/// The audit entry of an exchange: the client's provider when the client is known,
/// otherwise an anonymous caller naming the client id claimed.
fn attempt_entry(
    attempt: &Attempt,
    outcome: AuditOutcome,
    operation: &str,
) -> carepath_store::AuditEntry {
    let (subject, role) = match &attempt.npi {
        Some(npi) => (npi.clone(), Role::Provider.as_str().to_owned()),
        None => ("anonymous".to_owned(), "anonymous".to_owned()),
    };
    carepath_store::AuditEntry {
        subject,
        role,
        rpc: operation.to_owned(),
        record_kind: CLIENT_RECORD_KIND.to_owned(),
        record_id: attempt.claimed.clone(),
        member_id: None,
        outcome,
        repeats: 0,
    }
}

/// Whether `id` can be a client id: 1 to [`MAX_CLIENT_ID_LEN`] of
/// `A-Z a-z 0-9 . _ -` (so it is also safe in a file name).
pub fn valid_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn client_of(record: FhirClientRecord) -> AppResult<FhirClient> {
    let corrupt =
        |what: String| AppError::Internal(format!("fhir client {}: {what}", record.client_id));
    let npi = Npi::parse(&record.npi).map_err(|e| corrupt(format!("npi: {e}")))?;
    let jwks = serde_json::from_str(&record.jwks).map_err(|e| corrupt(format!("jwks: {e}")))?;
    let scopes = Scopes::parse(&record.scopes).map_err(|e| corrupt(format!("scopes: {e}")))?;
    Ok(FhirClient {
        client_id: record.client_id,
        name: record.name,
        npi,
        jwks,
        scopes,
        active: record.active,
        registered_at: record.registered_at,
        registered_by: record.registered_by,
    })
}

/// Members of a JSON Web Key that hold private key material, which is never
/// registered.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a key set, naming each problem under `jwks` (`jwks.keys[0].kid`); the set
/// when it is usable.
fn check_jwks(text: &str, invalid: &mut Invalid) -> Option<Value> {
    if text.len() > MAX_JWKS_BYTES {
        invalid.push("jwks", format!("larger than {MAX_JWKS_BYTES} bytes"));
        return None;
    }
    let set: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            invalid.push("jwks", format!("not JSON: {e}"));
            return None;
        }
    };
    let Some(keys) = set.get("keys").and_then(Value::as_array) else {
        invalid.push(
            "jwks.keys",
            "a JSON Web Key Set is an object with a keys array",
        );
        return None;
    };
    if keys.is_empty() || keys.len() > MAX_KEYS {
        invalid.push("jwks.keys", format!("must hold 1 to {MAX_KEYS} keys"));
        return None;
    }
    let before = invalid.violations.len();
    let mut kids: Vec<&str> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let path = |member: &str| format!("jwks.keys[{i}].{member}");
        let Some(key) = key.as_object() else {
            invalid.push(format!("jwks.keys[{i}]"), "must be an object");
            continue;
        };
        let text = |member: &str| key.get(member).and_then(Value::as_str);
        match text("kid") {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => {
                if kids.contains(&kid) {
                    invalid.push(path("kid"), "another key has the same kid");
                }
                kids.push(kid);
            }
            _ => invalid.push(
                path("kid"),
                format!("must be 1 to {MAX_KID_LEN} characters"),
            ),
        }
        for member in PRIVATE_MEMBERS {
            if key.contains_key(member) {
                invalid.push(path(member), "private key material must not be registered");
            }
        }
        if text("use").is_some_and(|u| u != "sig") || key.get("use").is_some_and(|u| !u.is_string())
        {
            invalid.push(path("use"), "must be sig");
        }
        let (alg, ok) = match text("kty") {
            Some("RSA") => ("RS384", check_rsa(key, &path, invalid)),
            Some("EC") => ("ES384", check_ec(key, &path, invalid)),
            _ => {
                invalid.push(path("kty"), "must be RSA or EC");
                continue;
            }
        };
        if key.get("alg").is_some_and(|a| a.as_str() != Some(alg)) {
            invalid.push(path("alg"), format!("must be {alg} for this key type"));
        }
        if ok
            && serde_json::from_value::<jsonwebtoken::jwk::Jwk>(Value::Object(key.clone())).is_err()
        {
            invalid.push(format!("jwks.keys[{i}]"), "not a usable JSON Web Key");
        }
    }
    (invalid.violations.len() == before).then_some(set)
}

/// The bytes of a base64url member, or a problem named under it.
fn b64_member(
    key: &serde_json::Map<String, Value>,
    member: &str,
    path: &dyn Fn(&str) -> String,
    invalid: &mut Invalid,
) -> Option<Vec<u8>> {
    let bytes = key
        .get(member)
        .and_then(Value::as_str)
        .and_then(|s| base64::Engine::decode(&BASE64URL, s).ok())
        .filter(|b| !b.is_empty());
    if bytes.is_none() {
        invalid.push(path(member), "must be base64url without padding");
    }
    bytes
}

/// An RSA public key of at least [`MIN_RSA_BITS`] bits.
fn check_rsa(
    key: &serde_json::Map<String, Value>,
    path: &dyn Fn(&str) -> String,
    invalid: &mut Invalid,
) -> bool {
    let n = b64_member(key, "n", path, invalid);
    let e = b64_member(key, "e", path, invalid);
    let Some(n) = n else { return false };
    let bits = n
        .iter()
        .position(|b| *b != 0)
        .map_or(0, |at| (n.len() - at) * 8 - n[at].leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        invalid.push(
            path("n"),
            format!("the modulus must be at least {MIN_RSA_BITS} bits"),
        );
        return false;
    }
    match e {
        Some(e) if e.len() <= 8 && e.last().is_some_and(|b| b & 1 == 1) => true,
        Some(_) => {
            invalid.push(path("e"), "not a usable public exponent");
            false
        }
        None => false,
    }
}

/// A P-384 public key: a point on the curve.
fn check_ec(
    key: &serde_json::Map<String, Value>,
    path: &dyn Fn(&str) -> String,
    invalid: &mut Invalid,
) -> bool {
    if key.get("crv").and_then(Value::as_str) != Some("P-384") {
        invalid.push(path("crv"), "must be P-384");
        return false;
    }
    let x = b64_member(key, "x", path, invalid);
    let y = b64_member(key, "y", path, invalid);
    let (Some(x), Some(y)) = (x, y) else {
        return false;
    };
    if x.len() != 48 || y.len() != 48 {
        invalid.push(path("x"), "P-384 coordinates are 48 bytes each");
        return false;
    }
    let mut point = Vec::with_capacity(97);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    if p384::PublicKey::from_sec1_bytes(&point).is_err() {
        invalid.push(path("x"), "not a point of P-384");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(text: &str) -> Vec<String> {
        let mut invalid = Invalid::new();
        check_jwks(text, &mut invalid);
        invalid.violations.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn a_generated_key_set_is_accepted() {
        let keys = client::generate_es384("k1").unwrap();
        assert!(violations(&keys.jwks.to_string()).is_empty());
    }

    #[test]
    fn key_set_problems_name_the_member() {
        let good = client::generate_es384("k1").unwrap().jwks;
        let key = &good["keys"][0];
        let with = |f: &dyn Fn(&mut Value)| {
            let mut k = key.clone();
            f(&mut k);
            serde_json::json!({ "keys": [k] }).to_string()
        };
        assert_eq!(violations("[]"), ["jwks.keys"]);
        assert_eq!(violations(r#"{"keys": []}"#), ["jwks.keys"]);
        assert_eq!(violations("{"), ["jwks"]);
        assert_eq!(
            violations(&with(&|k| {
                k.as_object_mut().unwrap().remove("kid");
            })),
            ["jwks.keys[0].kid"]
        );
        assert_eq!(
            violations(&with(&|k| k["crv"] = "P-256".into())),
            ["jwks.keys[0].crv"]
        );
        assert_eq!(
            violations(&with(&|k| k["kty"] = "oct".into())),
            ["jwks.keys[0].kty"]
        );
        assert_eq!(
            violations(&with(&|k| k["d"] = "AAAA".into())),
            ["jwks.keys[0].d"]
        );
        assert_eq!(
            violations(&with(&|k| k["alg"] = "RS256".into())),
            ["jwks.keys[0].alg"]
        );
        assert_eq!(
            violations(&with(&|k| k["x"] = "not base64!".into())),
            ["jwks.keys[0].x"]
        );
        let small_rsa = serde_json::json!({"keys": [{"kty": "RSA", "kid": "r", "e": "AQAB",
            "n": base64::Engine::encode(&BASE64URL, [0xffu8; 128])}]});
        assert_eq!(violations(&small_rsa.to_string()), ["jwks.keys[0].n"]);
        let big_rsa = serde_json::json!({"keys": [{"kty": "RSA", "kid": "r", "e": "AQAB",
            "n": base64::Engine::encode(&BASE64URL, [0xffu8; 256])}]});
        assert!(violations(&big_rsa.to_string()).is_empty());
        let twice = serde_json::json!({ "keys": [key, key] }).to_string();
        assert_eq!(violations(&twice), ["jwks.keys[1].kid"]);
        assert_eq!(violations(&" ".repeat(MAX_JWKS_BYTES + 1)), ["jwks"]);
    }

    #[test]
    fn client_ids_are_short_and_plain() {
        assert!(valid_client_id("ehr-1.prod_A"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"a".repeat(MAX_CLIENT_ID_LEN + 1)));
    }
}
