//! Load scenarios for `carepath-loadgen`: each is one kind of call. The gRPC ones use
//! tokens minted from the server's own signing key; the FHIR one uses an access token
//! the FHIR API grants a registered client.

use std::path::PathBuf;

use carepath_cli::{DbArgs, KeyArgs, authenticator};
use carepath_core::{Actor, Role};
use carepath_proto::{
    common::v1::PageRequest,
    common::v1::{Setting, Urgency},
    directory::v1::{GetPlanRequest, directory_service_client::DirectoryServiceClient},
    oncology::v1::{SubmitPlanRequest, oncology_service_client::OncologyServiceClient},
    precert::v1::{
        CheckRequirementRequest, ClinicalAnswer, GetCaseRequest, ListCasesRequest,
        ListReviewQueueRequest, RecordReference, ServiceLine, SubmitRequest, clinical_answer,
        precert_service_client::PrecertServiceClient,
    },
};
use tonic::transport::Channel;

/// Which call a scenario makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// `DirectoryService/GetPlan`: authenticated, one indexed read; the baseline.
    Baseline,
    /// `PrecertService/Submit`: an MRI request approved at once (case, events and
    /// audit entry committed durably).
    Submit,
    /// `OncologyService/SubmitPlan`: a TCHP plan evaluated, approved, stored.
    SubmitPlan,
    /// `PrecertService/CheckRequirement`: the MRI line of [`mri`] checked for the
    /// member (the rule found in memory, the parties read, the check audited).
    Check,
    /// FHIR `POST /fhir/Claim/$submit` over HTTP/1.1: the MRI of [`mri`] as a PAS
    /// request Bundle, approved at once (reviewAction A1).
    FhirSubmit,
    /// `PrecertService/GetCase` as the demo imaging centre, for cases it listed when
    /// the scenario connected (up to 500 of its newest, taken in turn).
    GetCase,
    /// `PrecertService/ListCases`: the demo imaging centre's first page (50 newest
    /// cases, each audited), the provider's view of its history.
    ListCases,
    /// `PrecertService/ListReviewQueue`: a radiology reviewer's first page (50 cases,
    /// urgent before routine, oldest due first).
    ReviewQueue,
    /// CDS Hooks `POST /cds-services/crd-order-sign` over HTTP/1.1: the MRI of the
    /// FHIR door's example call, each call with its own signed JWT (signed before the
    /// run starts), answered with its coverage information.
    CrdOrderSign,
}

/// Where and as which registered client the `fhir-submit` scenario calls the FHIR API.
#[derive(Debug, Clone)]
pub struct FhirTarget {
    /// The FHIR API's address (`127.0.0.1:8080`), reached over plain HTTP.
    pub addr: String,
    /// The registered client's id (its assertions' iss and sub, and the key id).
    pub client_id: String,
    /// The client's private key (PKCS#8 PEM), to sign the assertion.
    pub key: PathBuf,
    /// Connections kept open for reuse: the calls in flight at once.
    pub pool: usize,
}

impl FhirTarget {
    /// One keep-alive HTTP/1.1 client for every worker, its pool sized to the calls in
    /// flight.
    fn http_client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(self.pool.max(1))
            .build()
    }
}

/// The scope asked for: `$submit` needs Claim create.
const FHIR_SCOPE: &str = "system/Claim.cr";

/// The FHIR side of a scenario: one keep-alive client shared by every worker, and the
/// request Bundle cut around its Claim identifier so each call only joins strings.
#[derive(Debug)]
struct Fhir {
    client: reqwest::Client,
    submit_url: String,
    token: String,
    /// The Bundle's JSON up to the Claim identifier's value.
    head: String,
    /// The Bundle's JSON after the Claim identifier's value.
    tail: String,
}

/// Stands in for the Claim identifier's value while the Bundle is cut in two.
const REQUEST_ID_MARK: &str = "@request-id@";

impl Fhir {
    async fn connect(
        target: &FhirTarget,
        seconds: u64,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let client = target.http_client()?;
        let base = format!("http://{}", target.addr);
        let configuration: serde_json::Value = client
            .get(format!("{base}/fhir/.well-known/smart-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token_endpoint = configuration["token_endpoint"]
            .as_str()
            .ok_or("smart-configuration has no token_endpoint")?;
        let key = std::fs::read(&target.key)
            .map_err(|e| format!("reading {}: {e}", target.key.display()))?;
        let assertion = carepath_app::smart::client::sign_assertion(
            &key,
            &target.client_id,
            &target.client_id,
            token_endpoint,
            chrono::Utc::now(),
            chrono::Duration::minutes(1),
        )?;
        let response = client
            .post(token_endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", FHIR_SCOPE),
            ])
            .send()
            .await?;
        let status = response.status();
        let grant: serde_json::Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("token endpoint answered {status}: {grant}").into());
        }
        let token = grant["access_token"]
            .as_str()
            .ok_or("the token answer has no access_token")?
            .to_owned();
        // One token serves the whole run: it must outlive it, with a margin.
        let lifetime = grant["expires_in"].as_u64().unwrap_or(0);
        if lifetime < seconds + 10 {
            return Err(format!(
                "the access token lives {lifetime} s, too short for a {seconds} s run"
            )
            .into());
        }
        let (head, tail) = pas_mri_halves()?;
        Ok(Fhir {
            client,
            submit_url: format!("{base}/fhir/Claim/$submit"),
            token,
            head,
            tail,
        })
    }

    /// Submits the Bundle as request `request_id`; anything but 200 with an approved
    /// item is an error, overload answers (503, 429) mapped as the gRPC door maps them.
    async fn submit(&self, request_id: &str) -> Result<(), tonic::Status> {
        let body = format!("{}{request_id}{}", self.head, self.tail);
        let response = self
            .client
            .post(&self.submit_url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
            .body(body)
            .send()
            .await;
        http_outcome(response, br#""code":"A1""#).await
    }
}

/// Most JWTs signed ahead of a `crd-order-sign` run; calls beyond them sign their own.
const MAX_PRESIGNED: u64 = 200_000;
/// JWTs signed ahead per second of the run (above this machine's order-sign rate of about
/// 300 a second; ES384 signing costs the load generator about 2 ms each).
const PRESIGNED_PER_SECOND: u64 = 600;

/// The CDS Hooks side of a scenario: the example order-sign call, and JWTs signed
/// before the run so signing is not measured.
#[derive(Debug)]
struct Crd {
    client: reqwest::Client,
    url: String,
    body: String,
    key: Vec<u8>,
    client_id: String,
    jwts: std::sync::Mutex<Vec<String>>,
}

impl Crd {
    fn connect(target: &FhirTarget, seconds: u64) -> Result<Self, Box<dyn std::error::Error>> {
        let client = target.http_client()?;
        let url = format!("http://{}/cds-services/crd-order-sign", target.addr);
        let key = std::fs::read(&target.key)
            .map_err(|e| format!("reading {}: {e}", target.key.display()))?;
        let mut call: serde_json::Value = serde_json::from_str(include_str!(
            "../../crates/carepath-fhir/examples/crd-order-sign-mri.json"
        ))?;
        let date_of_service = chrono::Utc::now().date_naive() + chrono::Duration::days(14);
        call["context"]["draftOrders"]["entry"][0]["resource"]["occurrenceDateTime"] =
            date_of_service.format("%Y-%m-%d").to_string().into();
        let count = (seconds * PRESIGNED_PER_SECOND).min(MAX_PRESIGNED);
        let now = chrono::Utc::now();
        let jwts = (0..count)
            .map(|_| {
                carepath_app::smart::client::sign_assertion(
                    &key,
                    &target.client_id,
                    &target.client_id,
                    &url,
                    now,
                    chrono::Duration::minutes(5),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Crd {
            client,
            url,
            body: call.to_string(),
            key,
            client_id: target.client_id.clone(),
            jwts: std::sync::Mutex::new(jwts),
        })
    }

    /// One order-sign call; anything but 200 with the coverage information is an
    /// error, overload answers mapped as the gRPC door maps them.
    async fn order_sign(&self) -> Result<(), tonic::Status> {
        let presigned = self.jwts.lock().expect("jwt pool").pop();
        let jwt = match presigned {
            Some(jwt) => jwt,
            None => carepath_app::smart::client::sign_assertion(
                &self.key,
                &self.client_id,
                &self.client_id,
                &self.url,
                chrono::Utc::now(),
                chrono::Duration::minutes(5),
            )
            .map_err(|e| tonic::Status::internal(e.to_string()))?,
        };
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(jwt)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body.clone())
            .send()
            .await;
        http_outcome(response, br#""coverage-assertion-id""#).await
    }
}

/// A FHIR door's answer as a load outcome: 200 holding `expected`, else an error;
/// overload answers (503, 429) mapped as the gRPC door maps them.
async fn http_outcome(
    response: reqwest::Result<reqwest::Response>,
    expected: &[u8],
) -> Result<(), tonic::Status> {
    let unknown = |e: reqwest::Error| tonic::Status::unknown(e.to_string());
    let response = response.map_err(unknown)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unknown)?;
    match status {
        reqwest::StatusCode::OK => {}
        reqwest::StatusCode::SERVICE_UNAVAILABLE => {
            return Err(tonic::Status::unavailable("HTTP 503"));
        }
        reqwest::StatusCode::TOO_MANY_REQUESTS => {
            return Err(tonic::Status::resource_exhausted("HTTP 429"));
        }
        other => {
            return Err(tonic::Status::unknown(format!(
                "HTTP {other}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )));
        }
    }
    if bytes.windows(expected.len()).any(|w| w == expected) {
        Ok(())
    } else {
        Err(tonic::Status::unknown(format!(
            "200 without {}",
            String::from_utf8_lossy(expected)
        )))
    }
}

/// The JSON of [`pas_mri_bundle`] before and after its Claim identifier's value.
fn pas_mri_halves() -> Result<(String, String), Box<dyn std::error::Error>> {
    let text = pas_mri_bundle()?.to_string();
    let (head, tail) = text
        .split_once(REQUEST_ID_MARK)
        .ok_or("the request Bundle lost its identifier mark")?;
    Ok((head.to_owned(), tail.to_owned()))
}

/// The PAS request Bundle shipped as the FHIR door's example, made the same request as
/// [`mri`]: its date of service two weeks from today, its record `note-1`, and its Claim
/// identifier [`REQUEST_ID_MARK`].
fn pas_mri_bundle() -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut bundle: serde_json::Value = serde_json::from_str(include_str!(
        "../../crates/carepath-fhir/examples/pas-mri-approved.json"
    ))?;
    let date_of_service = chrono::Utc::now().date_naive() + chrono::Duration::days(14);
    let entries = bundle["entry"]
        .as_array_mut()
        .ok_or("the example Bundle has no entries")?;
    for entry in entries {
        let kind = entry["resource"]["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let resource = &mut entry["resource"];
        match kind.as_str() {
            "Claim" => {
                resource["identifier"][0]["value"] = REQUEST_ID_MARK.into();
                resource["item"][0]["servicedDate"] =
                    date_of_service.format("%Y-%m-%d").to_string().into();
                for info in resource["supportingInfo"]
                    .as_array_mut()
                    .ok_or("the example Claim has no supportingInfo")?
                {
                    if info["valueReference"]["reference"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("DocumentReference/"))
                    {
                        info["valueReference"]["reference"] = "DocumentReference/note-1".into();
                    }
                }
            }
            "DocumentReference" => {
                resource["id"] = "note-1".into();
                entry["fullUrl"] = "http://provider.example/fhir/DocumentReference/note-1".into();
            }
            _ => {}
        }
    }
    Ok(bundle)
}

/// A connected scenario, cheap to share between tasks.
#[derive(Debug)]
pub struct Scenario {
    kind: ScenarioKind,
    channel: Channel,
    admin: String,
    imaging: String,
    oncologist: String,
    reviewer: String,
    /// The cases [`ScenarioKind::GetCase`] reads, in turn.
    case_ids: Vec<String>,
    /// Distinguishes request ids between runs against the same database.
    run: String,
    tchp: carepath_proto::oncology::v1::TreatmentPlan,
    /// Set for [`ScenarioKind::FhirSubmit`] only.
    fhir: Option<Fhir>,
    /// Set for [`ScenarioKind::CrdOrderSign`] only.
    crd: Option<Crd>,
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

impl Scenario {
    /// Connects to the gRPC server at `addr` (whose database `database_url` holds the
    /// signing key) and, for [`ScenarioKind::FhirSubmit`], gets an access token from the
    /// FHIR API of `fhir` that lasts a run of `seconds`.
    pub async fn connect(
        kind: ScenarioKind,
        addr: &str,
        database_url: &str,
        fhir: Option<&FhirTarget>,
        seconds: u64,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let (fhir, crd) = match (kind, fhir) {
            (ScenarioKind::FhirSubmit, Some(target)) => {
                (Some(Fhir::connect(target, seconds).await?), None)
            }
            (ScenarioKind::CrdOrderSign, Some(target)) => {
                (None, Some(Crd::connect(target, seconds)?))
            }
            (ScenarioKind::FhirSubmit | ScenarioKind::CrdOrderSign, None) => {
                return Err("the FHIR scenarios need the FHIR client id and key".into());
            }
            _ => (None, None),
        };
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let keys = KeyArgs {
            signing_key: None,
            jwt_public_keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwt_issuers: vec![carepath_app::auth::ISSUER.to_owned()],
            jwt_audience: None,
            jwt_max_lifetime_hours: carepath_app::auth::DEFAULT_MAX_TOKEN_HOURS,
        };
        let db = DbArgs {
            database_url: database_url.to_owned(),
        };
        let auth = authenticator(&keys, &db).await?;
        let now = chrono::Utc::now();
        let hour = chrono::Duration::hours(1);
        let admin = auth.mint(&Actor::new(Role::Admin, "AD-001")?, now, hour)?;
        let imaging = auth.mint(&Actor::new(Role::Provider, IMAGING)?, now, hour)?;
        let oncologist = auth.mint(&Actor::new(Role::Provider, ONCOLOGIST)?, now, hour)?;
        let reviewer = auth.mint(&Actor::new(Role::PhysicianReviewer, REVIEWER)?, now, hour)?;
        let case_ids = match kind {
            ScenarioKind::GetCase => listed_cases(&channel, &imaging, 5).await?,
            _ => Vec::new(),
        };
        if kind == ScenarioKind::GetCase && case_ids.is_empty() {
            return Err(format!("provider {IMAGING} has no cases to read").into());
        }
        Ok(Scenario {
            kind,
            channel,
            admin,
            imaging,
            oncologist,
            reviewer,
            case_ids,
            run: uuid::Uuid::now_v7().simple().to_string(),
            tchp: tchp_plan(),
            fhir,
            crd,
        })
    }

    /// Makes call number `i` of `worker`.
    pub async fn call(&self, worker: u64, i: u64) -> Result<(), tonic::Status> {
        let request_id = format!("load-{}-{worker}-{i}", self.run);
        match self.kind {
            ScenarioKind::Baseline => {
                let mut client = DirectoryServiceClient::new(self.channel.clone());
                client
                    .get_plan(bearer(
                        &self.admin,
                        GetPlanRequest {
                            id: "PLAN-PCM-OAP".into(),
                        },
                    ))
                    .await?;
            }
            ScenarioKind::Submit => {
                let mut client = PrecertServiceClient::new(self.channel.clone());
                client
                    .submit(bearer(&self.imaging, mri(request_id)))
                    .await?;
            }
            ScenarioKind::Check => {
                let mut client = PrecertServiceClient::new(self.channel.clone());
                let submit = mri(request_id);
                let request = CheckRequirementRequest {
                    member_id: submit.member_id,
                    rendering_provider_npi: submit.requesting_provider_npi,
                    line: submit.lines.into_iter().next(),
                    diagnoses: submit.diagnoses,
                };
                client
                    .check_requirement(bearer(&self.imaging, request))
                    .await?;
            }
            ScenarioKind::SubmitPlan => {
                let mut client = OncologyServiceClient::new(self.channel.clone());
                let request = SubmitPlanRequest {
                    request_id,
                    member_id: "M100001".into(),
                    treating_provider_npi: ONCOLOGIST.into(),
                    servicing_provider_npi: String::new(),
                    urgency: Urgency::Urgent as i32,
                    start_date: "2026-12-01".into(),
                    plan: Some(self.tchp.clone()),
                };
                client
                    .submit_plan(bearer(&self.oncologist, request))
                    .await?;
            }
            ScenarioKind::GetCase => {
                let mut client = PrecertServiceClient::new(self.channel.clone());
                let n = (worker.wrapping_mul(7919) + i) as usize % self.case_ids.len();
                let id = self.case_ids[n].clone();
                client
                    .get_case(bearer(&self.imaging, GetCaseRequest { id }))
                    .await?;
            }
            ScenarioKind::ListCases => {
                let mut client = PrecertServiceClient::new(self.channel.clone());
                let request = ListCasesRequest {
                    provider_npi: IMAGING.into(),
                    ..Default::default()
                };
                client.list_cases(bearer(&self.imaging, request)).await?;
            }
            ScenarioKind::ReviewQueue => {
                let mut client = PrecertServiceClient::new(self.channel.clone());
                client
                    .list_review_queue(bearer(&self.reviewer, ListReviewQueueRequest::default()))
                    .await?;
            }
            ScenarioKind::FhirSubmit => {
                let fhir = self.fhir.as_ref().expect("connected with a FHIR target");
                fhir.submit(&request_id).await?;
            }
            ScenarioKind::CrdOrderSign => {
                let crd = self.crd.as_ref().expect("connected with a FHIR target");
                crd.order_sign().await?;
            }
        }
        Ok(())
    }
}

/// The demo imaging centre (its notices go to the portal).
pub const IMAGING: &str = "1184649790";
/// A demo physician reviewer in radiology.
const REVIEWER: &str = "MD-RAD-01";

/// The ids of up to `pages` pages of 100 of the newest cases `token`'s provider
/// lists.
async fn listed_cases(
    channel: &Channel,
    token: &str,
    pages: usize,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = PrecertServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    let mut page_token = String::new();
    for _ in 0..pages {
        let request = ListCasesRequest {
            page: Some(PageRequest {
                page_size: 100,
                page_token,
            }),
            provider_npi: IMAGING.into(),
            ..Default::default()
        };
        let page = client
            .list_cases(bearer(token, request))
            .await?
            .into_inner();
        ids.extend(page.cases.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(ids)
}
const ONCOLOGIST: &str = "1381083801";

/// A brain MRI for demo member M100001 (notices by email) two weeks from today, with
/// the answer that meets the rule's criteria: approved at once.
pub fn mri(request_id: String) -> SubmitRequest {
    let date_of_service = chrono::Utc::now().date_naive() + chrono::Duration::days(14);
    SubmitRequest {
        request_id,
        member_id: "M100001".into(),
        requesting_provider_npi: IMAGING.into(),
        servicing_provider_npi: IMAGING.into(),
        lines: vec![ServiceLine {
            service_code: "70553".into(),
            units: 1,
            date_of_service: date_of_service.format("%Y-%m-%d").to_string(),
            setting: Setting::Outpatient as i32,
            ..Default::default()
        }],
        diagnoses: vec!["G43.909".into()],
        urgency: Urgency::Routine as i32,
        answers: vec![ClinicalAnswer {
            question_id: "red_flag_symptoms".into(),
            value: Some(clinical_answer::Value::Flag(true)),
        }],
        records: vec![RecordReference {
            id: "note-1".into(),
            document: "clinical_notes".into(),
        }],
    }
}

/// TCHP for HER2-positive early breast cancer at an office, with its supportive care.
fn tchp_plan() -> carepath_proto::oncology::v1::TreatmentPlan {
    use carepath_oncology::{
        Catalogue, ClinicalContext, Intent, LineOfTherapy, PatientFactors, SiteOfService,
        StageGroup, TreatmentPlan, adopt_alternative,
    };
    let base = TreatmentPlan {
        diagnosis: carepath_core::Icd10Code::parse("C50.911").expect("valid code"),
        cancer_id: None,
        context: ClinicalContext {
            stage_group: StageGroup::parse("II").ok(),
            biomarkers: [("HER2".to_owned(), "positive".to_owned())].into(),
            histology: None,
            line: Some(LineOfTherapy::Neoadjuvant),
            intent: Some(Intent::Curative),
            performance_status: Some(0),
        },
        patient: PatientFactors {
            age_years: Some(52),
            body_surface_area_m2: Some(1.8),
            weight_kg: Some(70.0),
            creatinine_clearance_ml_min: Some(95.0),
            risk_factors: Default::default(),
        },
        drugs: Vec::new(),
        supportive: Vec::new(),
        site_of_service: Some(SiteOfService::Office),
    };
    let plan =
        adopt_alternative(&Catalogue::shipped(), &base, "tchp").expect("tchp is in the catalogue");
    carepath_server::oncology::plan_to_proto(&plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both doors' scenarios ask for the same thing: the FHIR Bundle maps to the very
    /// command the gRPC request converts to.
    #[test]
    fn fhir_submit_sends_the_submit_scenarios_request() {
        let (head, tail) = pas_mri_halves().expect("the example Bundle");
        let id = format!("load-{}-15-123456", uuid::Uuid::now_v7().simple());
        let bundle: serde_json::Value =
            serde_json::from_str(&format!("{head}{id}{tail}")).expect("JSON");
        let fhir = carepath_fhir::pas::request::submission(&bundle)
            .expect("a valid PAS request")
            .request;
        let grpc = carepath_server::precert::convert::submit(mri(id)).expect("a valid request");
        assert_eq!(fhir, grpc);
    }
}
