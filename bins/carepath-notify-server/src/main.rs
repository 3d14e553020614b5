//! `carepath-notify-server`: notifications alone (the consumer that turns events into
//! notices, the dispatcher that delivers them, and the notification service), for
//! deployments that run each area in its own process over a shared database.

use carepath_cli as cli;
use carepath_server::Area;

fn main() -> std::process::ExitCode {
    cli::thin_main(
        "carepath-notify-server",
        "carepath notifications (carepath.notify.v1.NotificationService)",
        &[Area::Notify],
    )
}
