//! `carepath-cases-server`: nurse case management alone, with the consumer that opens
//! cases from oncology plans, inpatient approvals and second-opinion requests, for
//! deployments that run each area in its own process over a shared database.

use carepath_cli as cli;
use carepath_server::Area;

fn main() -> std::process::ExitCode {
    cli::thin_main(
        "carepath-cases-server",
        "carepath case management service (carepath.cases.v1.CaseService)",
        &[Area::Cases],
    )
}
