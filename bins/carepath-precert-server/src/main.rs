//! `carepath-precert-server`: the precertification service alone, for deployments that run
//! each area in its own process over a shared database.

use carepath_cli as cli;
use carepath_server::Area;

fn main() -> std::process::ExitCode {
    cli::thin_main(
        "carepath-precert-server",
        "carepath precertification service (carepath.precert.v1.PrecertService)",
        &[Area::Precert],
    )
}
