//! `carepath-oncology-server`: oncology pathway review alone, for deployments that run
//! each area in its own process over a shared database.

use carepath_cli as cli;
use carepath_server::Area;

fn main() -> std::process::ExitCode {
    cli::thin_main(
        "carepath-oncology-server",
        "carepath oncology pathway review (carepath.oncology.v1.OncologyService)",
        &[Area::Oncology],
    )
}
