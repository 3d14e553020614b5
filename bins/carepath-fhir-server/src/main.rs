//! `carepath-fhir-server`: the FHIR prior-authorization API alone (Da Vinci PAS
//! submit, inquire and subscriptions; SMART backend services), for deployments that
//! run each door in its own process over a shared database.

use carepath_cli::{self as cli, fhir};

fn main() -> std::process::ExitCode {
    cli::main_with(
        "carepath-fhir-server",
        "carepath FHIR prior-authorization API (Da Vinci PAS, SMART backend services)",
        fhir::run_fhir_server,
    )
}
