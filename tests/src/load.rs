//! Load scenarios for `carepath-loadgen`: each is one kind of call, made with a token
//! minted from the server's own signing key.

use carepath_core::{Actor, Role};
use carepath_proto::directory::v1::{
    GetPlanRequest, directory_service_client::DirectoryServiceClient,
};
use carepath_server::cli::{DbArgs, KeyArgs, authenticator};
use tonic::transport::Channel;

/// Which call a scenario makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// `DirectoryService/GetPlan`: authenticated, one indexed read; the baseline.
    Baseline,
}

/// A connected scenario, cheap to share between tasks.
#[derive(Debug)]
pub struct Scenario {
    kind: ScenarioKind,
    channel: Channel,
    admin: String,
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
        let admin = auth.mint(
            &Actor::new(Role::Admin, "AD-001")?,
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )?;
        Ok(Scenario {
            kind,
            channel,
            admin,
        })
    }

    /// Makes call number `i` of `worker`.
    pub async fn call(&self, _worker: u64, _i: u64) -> Result<(), tonic::Status> {
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
                Ok(())
            }
        }
    }
}
