//! `carepath-approve`: approves one pended precertification case over gRPC as a
//! physician reviewer would (claim it, then record an approval), with a token minted
//! from the server's own signing key. End-to-end suites that drive a case from outside
//! the gRPC door (the FHIR checks) call it to stand in for the reviewer.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use carepath_core::{Actor, Role};
use carepath_proto::precert::v1::{
    ClaimCaseRequest, DecisionOutcome, RecordDecisionRequest,
    precert_service_client::PrecertServiceClient,
};
use carepath_server::auth::Authenticator;
use clap::Parser;
use tonic::transport::Channel;

/// How long each call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(
    name = "carepath-approve",
    about = "Approve a pended precertification case as a physician reviewer"
)]
struct Args {
    /// gRPC address of the server (host:port).
    #[arg(long)]
    addr: String,
    /// The server's signing key (PKCS#8 PEM), to mint the reviewer's token.
    #[arg(long)]
    signing_key: PathBuf,
    /// The reviewer's staff id (a physician reviewer of the case's specialty).
    #[arg(long, default_value = "MD-RAD-01")]
    reviewer: String,
    /// The case to approve (`PA-...`).
    case_id: String,
}

fn bearer<T>(token: &str, message: T) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|e| format!("token is not a header value: {e}"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

async fn approve(args: &Args) -> Result<String, String> {
    let auth = Authenticator::with_local_key(&args.signing_key)
        .map_err(|e| format!("signing key {}: {e}", args.signing_key.display()))?;
    let reviewer = Actor::new(Role::PhysicianReviewer, &args.reviewer)
        .map_err(|e| format!("reviewer {}: {e}", args.reviewer))?;
    let token = auth
        .mint(&reviewer, chrono::Utc::now(), chrono::Duration::minutes(10))
        .map_err(|e| format!("cannot mint a token: {e}"))?;
    let channel = Channel::from_shared(format!("http://{}", args.addr))
        .map_err(|e| format!("address {}: {e}", args.addr))?
        .connect_timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.addr))?;
    let mut precert = PrecertServiceClient::new(channel);
    precert
        .claim_case(bearer(
            &token,
            ClaimCaseRequest {
                case_id: args.case_id.clone(),
            },
        )?)
        .await
        .map_err(|s| format!("ClaimCase {}: {s:?}", args.case_id))?;
    let case = precert
        .record_decision(bearer(
            &token,
            RecordDecisionRequest {
                case_id: args.case_id.clone(),
                outcome: DecisionOutcome::Approved as i32,
                note: "Approved on clinical review.".into(),
                ..Default::default()
            },
        )?)
        .await
        .map_err(|s| format!("RecordDecision {}: {s:?}", args.case_id))?
        .into_inner()
        .case
        .ok_or("RecordDecision answered without a case")?;
    Ok(format!("{} {:?}", case.id, case.status()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match approve(&args).await {
        Ok(done) => {
            println!("approved: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("carepath-approve: {e}");
            ExitCode::FAILURE
        }
    }
}
