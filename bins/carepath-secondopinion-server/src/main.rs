//! `carepath-secondopinion-server`: the remote expert second-opinion service alone, for
//! deployments that run each area in its own process over a shared database.

use carepath_cli as cli;
use carepath_server::Area;

fn main() -> std::process::ExitCode {
    cli::thin_main(
        "carepath-secondopinion-server",
        "carepath remote expert second opinion (carepath.secondopinion.v1.SecondOpinionService)",
        &[Area::SecondOpinion],
    )
}
