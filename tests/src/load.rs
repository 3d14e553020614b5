//! Load scenarios for `carepath-loadgen`: each is one kind of call, made with a token
//! minted from the server's own signing key.

use carepath_cli::{DbArgs, KeyArgs, authenticator};
use carepath_core::{Actor, Role};
use carepath_proto::{
    common::v1::{Setting, Urgency},
    directory::v1::{GetPlanRequest, directory_service_client::DirectoryServiceClient},
    oncology::v1::{SubmitPlanRequest, oncology_service_client::OncologyServiceClient},
    precert::v1::{
        CheckRequirementRequest, ClinicalAnswer, RecordReference, ServiceLine, SubmitRequest,
        clinical_answer, precert_service_client::PrecertServiceClient,
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
}

/// A connected scenario, cheap to share between tasks.
#[derive(Debug)]
pub struct Scenario {
    kind: ScenarioKind,
    channel: Channel,
    admin: String,
    imaging: String,
    oncologist: String,
    /// Distinguishes request ids between runs against the same database.
    run: String,
    tchp: carepath_proto::oncology::v1::TreatmentPlan,
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
    pub async fn connect(
        kind: ScenarioKind,
        addr: &str,
        database_url: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let keys = KeyArgs {
            signing_key: None,
            jwt_public_keys: Vec::new(),
        };
        let db = DbArgs {
            database_url: database_url.to_owned(),
        };
        let auth = authenticator(&keys, &db)?;
        let now = chrono::Utc::now();
        let hour = chrono::Duration::hours(1);
        let admin = auth.mint(&Actor::new(Role::Admin, "AD-001")?, now, hour)?;
        let imaging = auth.mint(&Actor::new(Role::Provider, IMAGING)?, now, hour)?;
        let oncologist = auth.mint(&Actor::new(Role::Provider, ONCOLOGIST)?, now, hour)?;
        Ok(Scenario {
            kind,
            channel,
            admin,
            imaging,
            oncologist,
            run: uuid::Uuid::now_v7().simple().to_string(),
            tchp: tchp_plan(),
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
        }
        Ok(())
    }
}

/// The demo imaging centre (its notices go to the portal).
pub const IMAGING: &str = "1184649790";
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
