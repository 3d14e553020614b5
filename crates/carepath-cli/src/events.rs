//! The flags of the event relay, which publishes every domain event to NATS JetStream
//! (off unless `--nats-url` is given).

use std::time::Duration;

use carepath_app::events::{relay::RelaySettings, valid_prefix, valid_stream_name};

/// Where domain events go for other services (flattened into `ServeArgs`).
#[derive(Clone, clap::Args)]
pub struct EventArgs {
    /// NATS server to publish every domain event to, as a CloudEvents JSON message on
    /// JetStream, e.g. nats://127.0.0.1:4222. Off when not set.
    #[arg(long, env = "CAREPATH_NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream the events go to; created if missing (subjects
    /// `<prefix>.>`, file storage).
    #[arg(long, env = "CAREPATH_NATS_STREAM", default_value = "CAREPATH_EVENTS", value_parser = stream_name)]
    pub nats_stream: String,
    /// First tokens of every subject: an event of kind `precert.case.approved` goes on
    /// `<prefix>.precert.case.approved`.
    #[arg(long, env = "CAREPATH_NATS_SUBJECT_PREFIX", default_value = "carepath", value_parser = subject_prefix)]
    pub nats_subject_prefix: String,
    /// Seconds a publish waits for JetStream's acknowledgement (and a connection
    /// attempt for the server); an event not acknowledged stays in the outbox and is
    /// published again.
    #[arg(long, env = "CAREPATH_NATS_PUBLISH_TIMEOUT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub nats_publish_timeout_secs: u64,
    /// Seconds within which a stream created here drops a message whose event id it
    /// has seen (an event published again after a crash).
    #[arg(long, env = "CAREPATH_NATS_DUPLICATE_WINDOW_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub nats_duplicate_window_secs: u64,
    /// Days a stream created here keeps a message.
    #[arg(long, env = "CAREPATH_NATS_MAX_AGE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub nats_max_age_days: u64,
    /// MiB a stream created here holds at most; the oldest messages go first.
    #[arg(long, env = "CAREPATH_NATS_MAX_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub nats_max_mib: u64,
}

impl std::fmt::Debug for EventArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials.
        f.debug_struct("EventArgs")
            .field("nats_url", &self.nats_url.as_ref().map(|_| "<set>"))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .finish_non_exhaustive()
    }
}

fn stream_name(value: &str) -> Result<String, String> {
    if valid_stream_name(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a stream name (letters, digits, - and _, at most 64)"
        ))
    }
}

fn subject_prefix(value: &str) -> Result<String, String> {
    if valid_prefix(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a subject prefix (dot-separated tokens of letters, digits, - and _)"
        ))
    }
}

impl EventArgs {
    /// The relay's settings, when a NATS server is named.
    pub fn relay(&self) -> Option<RelaySettings> {
        let url = self.nats_url.as_ref().filter(|u| !u.trim().is_empty())?;
        let window = Duration::from_secs(self.nats_duplicate_window_secs);
        let max_age = Duration::from_secs(self.nats_max_age_days * 86_400);
        Some(RelaySettings {
            url: url.trim().to_owned(),
            stream: self.nats_stream.clone(),
            subject_prefix: self.nats_subject_prefix.clone(),
            publish_timeout: Duration::from_secs(self.nats_publish_timeout_secs),
            // JetStream refuses a window longer than the stream keeps messages.
            duplicate_window: window.min(max_age),
            max_age,
            max_bytes: i64::try_from(self.nats_max_mib * 1024 * 1024).unwrap_or(i64::MAX),
        })
    }
}
