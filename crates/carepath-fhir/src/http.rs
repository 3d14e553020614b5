//! The HTTP side of the FHIR door: routes, bodies, tokens and scopes, statuses.
//!
//! Each handler reads the body, checks the token carries the scope the interaction
//! needs, converts, calls one use case and converts back. Who may see which record
//! is the application's decision, as it is for gRPC.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, Form, Path, Query, State, rejection::FormRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carepath_app::{
    App, Caller,
    limits::{CallerRate, InProgress, KeyedLimiter},
    outbox::ConsumerOptions,
    pacing::{CallsInProgress, Pacing},
    precert::{FormRequest, ListCases, Precert},
    smart::{Access, Smart, TokenError, TokenRequest},
    subscriptions::{
        DeliveryOptions, SubscriptionFeed, SubscriptionState, Subscriptions, run_deliveries,
    },
};
use carepath_core::Actor;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    capability, codes,
    crd::{self, CallError},
    dtr,
    listen::{ConnectionBounds, ConnectionCounts, serve_connections},
    outcome::Failure,
    pas::{self, FieldMap},
    subscription::{self, FhirNotifications},
};

/// The FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Bounds of the HTTP door.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Requests handled at once; more are refused at once with 503 and
    /// `Retry-After` (nothing waits in a queue, as with gRPC).
    pub max_concurrent_requests: usize,
    /// Longest a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive after its headers; until it has
    /// arrived the request holds no slot. A late one is answered 408.
    pub request_body_timeout: Duration,
    /// Requests one caller (an access token's client, else the peer's address) may
    /// have in progress; more are answered 429 at once.
    pub requests_per_caller: usize,
    /// Bounds on connections ([`crate::listen`]).
    pub connections: ConnectionBounds,
    /// Each authenticated caller's rate (`None`: no per-caller limit); beyond it 429
    /// with `Retry-After`.
    pub per_caller: Option<CallerRate>,
    /// Token requests one network address may make: the token endpoint answers
    /// callers it does not know yet, and audits each refusal.
    pub token_requests_per_peer: CallerRate,
    /// How long the subscription feed holds a claimed outbox event.
    pub event_lease: Duration,
    /// The share of the time the subscription feed takes while requests are in
    /// progress (it runs flat out when none is).
    pub background_share: f64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(30),
            request_body_timeout: Duration::from_secs(10),
            requests_per_caller: 8,
            connections: ConnectionBounds::default(),
            per_caller: Some(CallerRate {
                per_second: NonZeroU32::new(10_000).expect("non-zero"),
                burst: NonZeroU32::new(2_000).expect("non-zero"),
            }),
            token_requests_per_peer: CallerRate {
                per_second: NonZeroU32::new(10).expect("non-zero"),
                burst: NonZeroU32::new(50).expect("non-zero"),
            },
            event_lease: ConsumerOptions::default().lease,
            background_share: 0.25,
        }
    }
}

/// The use cases the FHIR door calls, where it is reached from, and its per-caller
/// limits.
#[derive(Debug, Clone)]
pub struct FhirDoor {
    app: App,
    precert: Precert,
    smart: Smart,
    subscriptions: Subscriptions,
    public_url: Arc<str>,
    callers: Option<Arc<KeyedLimiter<Actor>>>,
    peers: Arc<KeyedLimiter<IpAddr>>,
}

impl FhirDoor {
    /// Only endpoints on `hosts` (or their subdomains) may be subscribed; an empty
    /// list allows any host.
    pub fn with_subscription_hosts(mut self, hosts: Vec<String>) -> Self {
        self.subscriptions = self.subscriptions.with_allowed_hosts(hosts);
        self
    }

    /// The door over `precert` (sharing its rule engine with any other door) whose
    /// public origin is `public_url` (`http://127.0.0.1:8080`): token audiences
    /// and full URLs are written under it.
    pub fn new(app: App, precert: Precert, public_url: &str, limits: &HttpLimits) -> Self {
        FhirDoor {
            smart: Smart::new(app.clone()),
            subscriptions: Subscriptions::new(app.clone()),
            app,
            precert,
            public_url: public_url.trim_end_matches('/').into(),
            callers: limits
                .per_caller
                .map(|rate| Arc::new(KeyedLimiter::new(rate))),
            peers: Arc::new(KeyedLimiter::new(limits.token_requests_per_peer)),
        }
    }

    /// The FHIR base URL (`<origin>/fhir`).
    pub fn base(&self) -> String {
        format!("{}/fhir", self.public_url)
    }

    /// Refuses a caller over its rate limit.
    fn within_rate(&self, actor: &Actor) -> Result<(), Failure> {
        if let Some(callers) = &self.callers
            && let Err(wait) = callers.check(actor)
        {
            carepath_app::telemetry::refused("fhir", "rate");
            return Err(Failure::throttled(
                wait,
                "this caller is over its rate limit",
            ));
        }
        Ok(())
    }

    /// The caller a request's bearer token names, if the token is good and grants
    /// `access` to `resource`.
    fn caller(
        &self,
        headers: &HeaderMap,
        resource: &str,
        access: Access,
        operation: &str,
    ) -> Result<Caller, Failure> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (actor, scopes) = self
            .app
            .auth
            .authenticate_scoped(header, self.app.now())
            .map_err(|e| Failure::new(StatusCode::UNAUTHORIZED, "login", e.to_string()))?;
        self.within_rate(&actor)?;
        if !scopes.allows(resource, access) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token's scopes do not grant {access:?} on {resource}"),
            ));
        }
        Ok(Caller::new(actor, operation))
    }
}

/// A FHIR JSON answer.
fn fhir(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body.to_string(),
    )
        .into_response()
}

/// A `Retry-After` value: whole seconds, at least one.
fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64)
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = fhir(self.status, &self.outcome);
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after(wait));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"carepath\""),
            );
        }
        response
    }
}

/// The body of a FHIR interaction: JSON, sent as `application/fhir+json` (or
/// `application/json`).
fn body(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, Failure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(FHIR_JSON) && !media.eq_ignore_ascii_case("application/json") {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!("send {FHIR_JSON}; got {content_type:?}"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not JSON: {e}"),
        )
    })
}

async fn metadata(State(door): State<FhirDoor>) -> Response {
    fhir(
        StatusCode::OK,
        &capability::capability_statement(&door.public_url, env!("CARGO_PKG_VERSION")),
    )
}

async fn smart_configuration(State(door): State<FhirDoor>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        capability::smart_configuration(&door.public_url).to_string(),
    )
        .into_response()
}

/// The form of a token request.
#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_assertion_type: String,
    #[serde(default)]
    client_assertion: String,
    #[serde(default)]
    scope: String,
}

fn oauth_error(error: &TokenError) -> Response {
    let status = match error {
        TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        TokenError::Internal(cause) => {
            tracing::error!(%cause, "token request failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({"error": error.code(), "error_description": error.description()}).to_string(),
    )
        .into_response()
}

async fn token(
    State(door): State<FhirDoor>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    if let Err(wait) = door.peers.check(&peer.ip()) {
        carepath_app::telemetry::refused("fhir", "token_rate");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json!({
                "error": "invalid_request",
                "error_description": "too many token requests from this address; retry later",
            })
            .to_string(),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after(wait));
        return response;
    }
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => {
            return oauth_error(&TokenError::InvalidRequest(format!(
                "send application/x-www-form-urlencoded: {rejection}"
            )));
        }
    };
    let request = TokenRequest {
        grant_type: form.grant_type,
        client_assertion_type: form.client_assertion_type,
        client_assertion: form.client_assertion,
        scope: form.scope,
    };
    let audience = capability::token_endpoint(&door.public_url);
    match door.smart.exchange(request, &audience).await {
        Ok(grant) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json!({
                "access_token": grant.access_token,
                "token_type": "bearer",
                "expires_in": grant.expires_in,
                "scope": grant.scope,
            })
            .to_string(),
        )
            .into_response(),
        Err(e) => oauth_error(&e),
    }
}

async fn submit(
    State(door): State<FhirDoor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let caller = door.caller(&headers, "Claim", Access::Create, "fhir.Claim.submit")?;
    let bundle = body(&headers, &bytes)?;
    let submission =
        pas::submission(&bundle).map_err(|i| Failure::invalid(StatusCode::BAD_REQUEST, &i))?;
    let submitted = door
        .precert
        .submit(&caller, submission.request)
        .await
        .map_err(|e| Failure::of_app(&e, &submission.fields))?;
    let bundle = pas::response_bundle(
        &submitted.case,
        &submission.claim_identifier,
        submission.bundle_identifier.as_ref(),
        codes::PROFILE_RESPONSE_BUNDLE,
        codes::PROFILE_CLAIM_RESPONSE,
        &door.base(),
    );
    Ok(fhir(StatusCode::OK, &bundle))
}

/// Where a request lookup's fields come from: the requester is the Claim's provider.
fn requester_fields() -> FieldMap {
    let mut fields = FieldMap::new("Claim");
    fields.insert("requesting_provider_npi", "Claim.provider");
    fields
}

/// Most requests one inquiry answers with.
const MAX_INQUIRY_RESULTS: u32 = 50;

async fn inquire(
    State(door): State<FhirDoor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let caller = door.caller(&headers, "Claim", Access::Read, "fhir.Claim.inquire")?;
    let bundle = body(&headers, &bytes)?;
    let inquiry =
        pas::inquiry(&bundle).map_err(|i| Failure::invalid(StatusCode::BAD_REQUEST, &i))?;
    let fields = requester_fields();
    let views = match &inquiry.identifier {
        Some(identifier) => {
            vec![
                door.precert
                    .find_request(&caller, inquiry.requesting_npi.as_ref(), &identifier.value)
                    .await
                    .map_err(|e| Failure::of_app(&e, &fields))?,
            ]
        }
        None => {
            let query = ListCases {
                member_id: inquiry.member_id.clone(),
                page: carepath_app::PageRequest {
                    token: String::new(),
                    size: MAX_INQUIRY_RESULTS,
                },
                ..ListCases::default()
            };
            door.precert
                .list_cases(&caller, query)
                .await
                .map_err(|e| Failure::of_app(&e, &fields))?
                .items
        }
    };
    if views.is_empty() {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no prior-authorization request matches the inquiry",
        ));
    }
    let parameter: Vec<Value> = views
        .iter()
        .map(|view| {
            let identifier = pas::ClaimIdentifier {
                system: inquiry.identifier.as_ref().and_then(|i| i.system.clone()),
                value: view.request_id.clone(),
            };
            json!({
                "name": "responseBundle",
                "resource": pas::response_bundle(
                    view,
                    &identifier,
                    inquiry.bundle_identifier.as_ref(),
                    codes::PROFILE_INQUIRY_RESPONSE_BUNDLE,
                    codes::PROFILE_INQUIRY_RESPONSE,
                    &door.base(),
                ),
            })
        })
        .collect();
    let parameters = json!({"resourceType": "Parameters", "parameter": parameter});
    Ok(fhir(StatusCode::OK, &parameters))
}

async fn read_claim_response(
    State(door): State<FhirDoor>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "ClaimResponse",
        Access::Read,
        "fhir.ClaimResponse.read",
    )?;
    let view = door
        .precert
        .get_case(&caller, &id)
        .await
        .map_err(|e| Failure::of_app(&e, &FieldMap::new("ClaimResponse")))?;
    let identifier = pas::ClaimIdentifier {
        system: None,
        value: view.request_id.clone(),
    };
    let resource = pas::claim_response(&view, &identifier, codes::PROFILE_CLAIM_RESPONSE).0;
    Ok(fhir(StatusCode::OK, &resource))
}

/// The search parameters of `GET ClaimResponse`.
#[derive(Debug, Deserialize)]
struct ClaimResponseSearch {
    /// The requester's identifier of the request (`[system|]value`).
    identifier: Option<String>,
}

async fn search_claim_response(
    State(door): State<FhirDoor>,
    Query(search): Query<ClaimResponseSearch>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "ClaimResponse",
        Access::Search,
        "fhir.ClaimResponse.search",
    )?;
    let Some(identifier) = search.identifier.filter(|i| !i.trim().is_empty()) else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "required",
            "search ClaimResponse by identifier (the Claim's identifier of the request)",
        ));
    };
    let (system, value) = match identifier.split_once('|') {
        Some((system, value)) => (Some(system.to_owned()).filter(|s| !s.is_empty()), value),
        None => (None, identifier.as_str()),
    };
    let found = match door.precert.find_request(&caller, None, value).await {
        Ok(view) => Some(view),
        Err(carepath_app::AppError::NotFound { .. }) => None,
        Err(e) => return Err(Failure::of_app(&e, &requester_fields())),
    };
    let entries: Vec<Value> = found
        .iter()
        .map(|view| {
            let identifier = pas::ClaimIdentifier {
                system: system.clone(),
                value: view.request_id.clone(),
            };
            let resource = pas::claim_response(view, &identifier, codes::PROFILE_CLAIM_RESPONSE).0;
            json!({
                "fullUrl": format!("{}/ClaimResponse/{}", door.base(), view.case.id),
                "resource": resource,
                "search": {"mode": "match"},
            })
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "entry": entries,
    });
    Ok(fhir(StatusCode::OK, &bundle))
}

async fn create_subscription(
    State(door): State<FhirDoor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Subscription",
        Access::Create,
        "fhir.Subscription.create",
    )?;
    let resource = body(&headers, &bytes)?;
    let new = subscription::new_subscription(&resource)
        .map_err(|i| Failure::invalid(StatusCode::BAD_REQUEST, &i))?;
    let created = door
        .subscriptions
        .create(&caller, new)
        .await
        .map_err(|e| Failure::of_app(&e, &subscription::fields()))?;
    let mut response = fhir(StatusCode::CREATED, &subscription::resource(&created));
    if let Ok(location) =
        HeaderValue::from_str(&format!("{}/Subscription/{}", door.base(), created.id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn read_subscription(
    State(door): State<FhirDoor>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Subscription",
        Access::Read,
        "fhir.Subscription.read",
    )?;
    let found = door
        .subscriptions
        .get(&caller, &id)
        .await
        .map_err(|e| Failure::of_app(&e, &subscription::fields()))?;
    // FHIR reads a deleted resource as gone; its $status still answers.
    if found.status == SubscriptionState::Off {
        return Err(Failure::new(
            StatusCode::GONE,
            "deleted",
            format!("Subscription {id} was deleted"),
        ));
    }
    let resource = subscription::resource(&found);
    Ok(fhir(StatusCode::OK, &resource))
}

async fn delete_subscription(
    State(door): State<FhirDoor>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Subscription",
        Access::Delete,
        "fhir.Subscription.delete",
    )?;
    door.subscriptions
        .delete(&caller, &id)
        .await
        .map_err(|e| Failure::of_app(&e, &subscription::fields()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn subscription_status(
    State(door): State<FhirDoor>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Subscription",
        Access::Read,
        "fhir.Subscription.status",
    )?;
    let status = door
        .subscriptions
        .status(&caller, &id)
        .await
        .map_err(|e| Failure::of_app(&e, &subscription::fields()))?;
    let bundle = subscription::status_bundle(&status, &door.base(), door.app.now());
    Ok(fhir(StatusCode::OK, &bundle))
}

/// A JSON answer (CDS Hooks speaks plain JSON).
fn plain_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn cds_discovery() -> Response {
    plain_json(StatusCode::OK, &crd::discovery())
}

/// A CDS Hooks call to one coverage requirements service: authenticated by the
/// client's signed JWT, read, asserted by the application, answered with cards and
/// the orders updated with their coverage information.
async fn cds_service(
    State(door): State<FhirDoor>,
    Path(service): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let Some(hook) = crd::hook_of(&service) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no CDS service {service:?}: see /cds-services"),
        ));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let service_url = format!("{}/cds-services/{service}", door.public_url);
    let client = door
        .smart
        .authenticate_hook(authorization, &service_url)
        .await
        .map_err(|e| match e {
            TokenError::Internal(_) => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                e.description(),
            ),
            _ => Failure::new(StatusCode::UNAUTHORIZED, "login", e.description()),
        })?;
    door.within_rate(&client.actor)?;
    let caller = Caller::new(client.actor, format!("cds-hooks/{hook}"));
    let call: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "structure",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let caller_npi = caller.actor.provider_npi().ok_or_else(|| {
        Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "CDS clients act for a provider",
        )
    })?;
    let read = match crd::read_call(hook, &call, &caller_npi, door.app.now().date_naive()) {
        Ok(read) => read,
        Err(CallError::Invalid(invalid)) => {
            return Err(Failure::invalid(StatusCode::BAD_REQUEST, &invalid));
        }
        Err(CallError::Prefetch(what)) => {
            return Err(Failure::new(
                StatusCode::PRECONDITION_FAILED,
                "required",
                what,
            ));
        }
        Err(CallError::UnknownMember(why)) => {
            return Ok(plain_json(StatusCode::OK, &crd::unknown_member(&why)));
        }
    };
    let Some(request) = read.request.clone() else {
        return Ok(plain_json(
            StatusCode::OK,
            &crd::response(&read, &[], &door.base()),
        ));
    };
    match door.precert.assert_coverage(&caller, request).await {
        Ok(assertions) => Ok(plain_json(
            StatusCode::OK,
            &crd::response(&read, &assertions, &door.base()),
        )),
        Err(carepath_app::AppError::Invalid(invalid)) => Ok(plain_json(
            StatusCode::OK,
            &crd::problems(&invalid, &read.fields),
        )),
        Err(carepath_app::AppError::FailedPrecondition(why)) => Ok(plain_json(
            StatusCode::OK,
            &crd::notice(
                "warning",
                "carepath cannot tell what these orders need",
                &why,
            ),
        )),
        Err(e) => Err(Failure::of_app(&e, &read.fields)),
    }
}

/// `$questionnaire-package`: the Questionnaires the orders' coverage information (or
/// the canonicals asked for) call for, each in a Bundle with a draft response.
async fn questionnaire_package(
    State(door): State<FhirDoor>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Questionnaire",
        Access::Read,
        "fhir.Questionnaire.questionnaire-package",
    )?;
    let parameters = body(&headers, &bytes)?;
    let (request, fields) = dtr::form_request(&parameters)
        .map_err(|i| Failure::invalid(StatusCode::BAD_REQUEST, &i))?;
    let forms = door
        .precert
        .forms(&caller, request)
        .await
        .map_err(|e| Failure::of_app(&e, &fields))?;
    Ok(fhir(StatusCode::OK, &dtr::package(&forms, &door.base())))
}

/// Reads one Questionnaire (`{rule}-{list version}`).
async fn read_questionnaire(
    State(door): State<FhirDoor>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let caller = door.caller(
        &headers,
        "Questionnaire",
        Access::Read,
        "fhir.Questionnaire.read",
    )?;
    let not_found = || {
        Failure::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no Questionnaire {id}"),
        )
    };
    let (rule, version) = dtr::parse_questionnaire_id(&id).ok_or_else(not_found)?;
    let forms = door
        .precert
        .forms(
            &caller,
            FormRequest {
                assertions: Vec::new(),
                rules: vec![(rule, Some(version))],
            },
        )
        .await
        .map_err(|e| match e {
            carepath_app::AppError::Invalid(_) => not_found(),
            e => Failure::of_app(&e, &FieldMap::new("Questionnaire")),
        })?;
    let form = forms.first().ok_or_else(not_found)?;
    Ok(fhir(
        StatusCode::OK,
        &dtr::questionnaire(&form.form, &door.base()),
    ))
}

async fn not_found() -> Response {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not-supported",
        "no such FHIR interaction here: see /fhir/metadata",
    )
    .into_response()
}

/// Who a request counts against for the per-caller limit: the client an access
/// token names, or (no token, or one that does not check: the token endpoint, CDS
/// Hooks, discovery) the peer's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallerKey {
    Client(Actor),
    Peer(IpAddr),
}

/// The door's requests in progress: a slot each, taken without waiting, once the
/// request has arrived; and each caller's share of them.
#[derive(Debug, Clone)]
struct Slots {
    free: Arc<Semaphore>,
    limit: usize,
    callers: Arc<InProgress<CallerKey>>,
    app: App,
    body_timeout: Duration,
    max_body_bytes: usize,
}

impl Slots {
    fn new(app: &App, limits: &HttpLimits) -> Self {
        let limit = limits.max_concurrent_requests.max(1);
        Slots {
            free: Arc::new(Semaphore::new(limit)),
            limit,
            callers: InProgress::new(limits.requests_per_caller),
            app: app.clone(),
            body_timeout: limits.request_body_timeout,
            max_body_bytes: limits.max_body_bytes,
        }
    }

    /// The caller `request` counts against: its bearer token's client when the token
    /// checks (the handler checks it again with its scopes), else `peer`.
    fn key(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> CallerKey {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.app.auth.authenticate_scoped(header, self.app.now()) {
            Ok((actor, _)) => CallerKey::Client(actor),
            Err(_) => CallerKey::Peer(peer.unwrap_or(IpAddr::from([0, 0, 0, 0]))),
        }
    }
}

/// Background work gives way to the requests in progress.
impl CallsInProgress for Slots {
    fn in_progress(&self) -> usize {
        self.limit.saturating_sub(self.free.available_permits())
    }
}

fn busy(message: String) -> Response {
    Failure {
        retry_after: Some(Duration::from_secs(1)),
        ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, "transient", message)
    }
    .into_response()
}

/// Admits a request: its body must arrive within the body timeout (408 otherwise)
/// and fit the size limit (413); then its caller must have a slot of its own left
/// (429 otherwise) and the door a free slot (503). Nothing waits in a queue, so an
/// overloaded door stays responsive and the client backs off or goes elsewhere, and
/// a request whose body never comes holds no slot.
async fn admit(
    State(slots): State<Slots>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(
        slots.body_timeout,
        axum::body::to_bytes(body, slots.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                carepath_app::telemetry::refused("fhir", "size");
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-costly",
                    format!(
                        "the request body is larger than {} bytes",
                        slots.max_body_bytes
                    ),
                )
                .into_response()
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "incomplete",
                    format!("the request body could not be read: {e}"),
                )
                .into_response()
            };
        }
        Err(_) => {
            carepath_app::telemetry::refused("fhir", "late_body");
            return Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} s of its headers",
                    slots.body_timeout.as_secs()
                ),
            )
            .into_response();
        }
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(_caller) = slots.callers.take(&slots.key(&parts.headers, peer)) else {
        carepath_app::telemetry::refused("fhir", "per_caller_calls");
        return Failure {
            retry_after: Some(Duration::from_secs(1)),
            ..Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!(
                    "too many requests in progress: a caller may have at most {} at once; \
                     retry when one has been answered",
                    slots.callers.limit()
                ),
            )
        }
        .into_response();
    };
    let Ok(_slot) = slots.free.try_acquire() else {
        carepath_app::telemetry::refused("fhir", "concurrency");
        return busy(
            "the server is at its limit of requests in progress; retry shortly".to_owned(),
        );
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The FHIR door's routes under `/fhir` and the token endpoint at `/auth/token`.
pub fn router(door: FhirDoor, limits: HttpLimits) -> Router {
    let slots = Slots::new(&door.app, &limits);
    routes(door, limits, slots)
}

/// Every route of the door, as the metrics and spans name them.
const ROUTES: &[&str] = &[
    "/fhir/metadata",
    "/fhir/.well-known/smart-configuration",
    "/auth/token",
    "/fhir/Claim/$submit",
    "/fhir/Claim/$inquire",
    "/fhir/ClaimResponse",
    "/fhir/ClaimResponse/{id}",
    "/fhir/Subscription",
    "/fhir/Subscription/{id}",
    "/fhir/Subscription/{id}/$status",
    "/fhir/Questionnaire/$questionnaire-package",
    "/fhir/Questionnaire/{id}",
    "/cds-services",
    "/cds-services/{service}",
];

/// The route label of a request: one of [`ROUTES`], or `other` (an unknown path,
/// whatever a client sends, adds no series).
fn route_label(request: &axum::extract::Request) -> &'static str {
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    matched
        .and_then(|m| ROUTES.iter().find(|r| **r == m).copied())
        .unwrap_or("other")
}

/// The statuses the door answers, each its own label.
const STATUSES: &[&str] = &[
    "200", "201", "204", "400", "401", "403", "404", "405", "408", "409", "410", "412", "413",
    "415", "422", "429", "500", "503",
];

/// An HTTP status as a label: one of [`STATUSES`], or its class.
fn status_label(status: StatusCode) -> &'static str {
    let code = status.as_str();
    STATUSES
        .iter()
        .find(|s| **s == code)
        .copied()
        .unwrap_or(match status.as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        })
}

/// Counts every request by route and status with its latency, and runs it in a span
/// that continues the caller's W3C trace context (`traceparent`), if it sent one.
async fn observe(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = route_label(&request);
    let call = carepath_app::telemetry::CallInProgress::start("fhir");
    let span = tracing::info_span!("http", method = %request.method(), route);
    carepath_app::telemetry::follow(
        &span,
        request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
    );
    let response = next.run(request).instrument(span).await;
    call.finish("fhir", route, status_label(response.status()));
    response
}

fn routes(door: FhirDoor, limits: HttpLimits, slots: Slots) -> Router {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart_configuration),
        )
        .route("/auth/token", post(token))
        .route("/fhir/Claim/$submit", post(submit))
        .route("/fhir/Claim/$inquire", post(inquire))
        .route("/fhir/ClaimResponse", get(search_claim_response))
        .route("/fhir/ClaimResponse/{id}", get(read_claim_response))
        .route("/fhir/Subscription", post(create_subscription))
        .route(
            "/fhir/Subscription/{id}",
            get(read_subscription).delete(delete_subscription),
        )
        .route("/fhir/Subscription/{id}/$status", get(subscription_status))
        .route(
            "/fhir/Questionnaire/$questionnaire-package",
            post(questionnaire_package),
        )
        .route("/fhir/Questionnaire/{id}", get(read_questionnaire))
        .route("/cds-services", get(cds_discovery))
        .route("/cds-services/{service}", post(cds_service))
        .fallback(not_found)
        .with_state(door)
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(slots, admit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(axum::middleware::from_fn(observe))
}

/// Every minute: drops the rate-limit buckets of callers gone idle and logs how many
/// requests and connections were refused, and for what.
async fn forget_idle_callers(
    door: FhirDoor,
    slots: Slots,
    connections: Arc<ConnectionCounts>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let counters = || {
        [
            slots.callers.refused(),
            connections.refused.load(Ordering::Relaxed),
            connections.idle_closed.load(Ordering::Relaxed),
        ]
    };
    let mut last = counters();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let callers = door.callers.as_ref().map_or(0, |l| {
            l.forget_idle();
            l.take_refused()
        });
        door.peers.forget_idle();
        let peers = door.peers.take_refused();
        if callers + peers > 0 {
            tracing::warn!(
                callers,
                token_requests = peers,
                "FHIR requests refused in the last minute: over their rate limit"
            );
        }
        let now = counters();
        let [crowded, turned_away, idle] = [0, 1, 2].map(|i| now[i] - last[i]);
        last = now;
        if crowded > 0 {
            tracing::warn!(
                refused = crowded,
                limit = slots.callers.limit(),
                "FHIR requests refused in the last minute: callers with too many in progress"
            );
        }
        if turned_away > 0 {
            tracing::warn!(
                refused = turned_away,
                "FHIR connections closed at once in the last minute: the connection limit"
            );
        }
        if idle > 0 {
            tracing::info!(
                closed = idle,
                "FHIR connections closed in the last minute: idle"
            );
        }
    }
}

/// Serves the FHIR door on `listener` until `shutdown` completes, with its
/// background work: the feed that turns decisions into subscription notifications
/// and the loop that delivers them. Requests in flight finish first; then the
/// background work is told to stop and awaited.
pub async fn serve(
    door: FhirDoor,
    listener: TcpListener,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = CancellationToken::new();
    let slots = Slots::new(&door.app, &limits);
    let feed = tokio::spawn(carepath_app::outbox::run_consumer(
        door.app.store.clone(),
        door.app.clock.clone(),
        Arc::new(SubscriptionFeed::new(&door.app)),
        ConsumerOptions {
            lease: limits.event_lease,
            ..ConsumerOptions::default()
        },
        Pacing::behind(Arc::new(slots.clone()), limits.background_share),
        background.clone(),
    ));
    let deliveries = tokio::spawn(run_deliveries(
        door.app.clone(),
        Arc::new(FhirNotifications { base: door.base() }),
        DeliveryOptions::default(),
        background.clone(),
    ));
    let counts = Arc::new(ConnectionCounts::default());
    let limiters = tokio::spawn(forget_idle_callers(
        door.clone(),
        slots.clone(),
        counts.clone(),
        background.clone(),
    ));
    let router = routes(door, limits, slots);
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopping.cancel();
    });
    let result = serve_connections(listener, router, limits.connections, counts, stop).await;
    background.cancel();
    let _ = tokio::join!(feed, deliveries, limiters);
    result
}
