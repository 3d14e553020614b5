//! Where notices go out: the SMTP server, the fax gateway, the print-batch folder, and
//! how deliveries are retried. Secrets never reach a log line (the `Debug` output of
//! the channel settings leaves them out).

use std::{sync::Arc, time::Duration};

use carepath_notify::{
    Channels, EmailChannel, EmailSettings, FaxChannel, FaxSettings, MailChannel, MailSettings,
    PortalChannel, RetryPolicy, TlsMode,
};

/// How the dispatcher claims notices.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    /// Notices claimed at once.
    pub batch: u32,
    /// How long a claimed notice stays with this dispatcher; longer than the slowest
    /// channel's timeout, so a live dispatcher never loses a notice it is sending.
    pub lease: Duration,
    /// Pause when nothing is due.
    pub idle_poll: Duration,
    /// Notices of a batch sent at once.
    pub parallelism: usize,
    /// Rounds under way at once while claims come back full (a backlog) and the work
    /// may run without rest (no call in progress, or fallen behind): each round
    /// waits on the store twice (its claim, its record) besides its sends, and other
    /// rounds work in those waits. One round at a time when the notices are few.
    pub lanes: usize,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            parallelism: 8,
            lanes: 4,
            // Larger claims (64) cost fewer writes in all but hold the one SQLite
            // writer longer each, and the calls' tail latency grew with them.
            batch: 32,
            lease: Duration::from_secs(120),
            idle_poll: Duration::from_millis(200),
        }
    }
}

/// Everything the notification area needs besides the database.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// The SMTP server notices are emailed through.
    pub email: EmailSettings,
    /// `None`: fax notices fail as retryable until a gateway is configured.
    pub fax: Option<FaxSettings>,
    /// The folder postal letters are written to.
    pub mail: MailSettings,
    /// When a failed delivery is tried again, and when it is given up.
    pub retry: RetryPolicy,
    /// How the dispatcher claims notices.
    pub dispatch: DispatchOptions,
}

impl Default for NotifySettings {
    /// A plaintext relay on this host, no fax gateway, letters in the temporary folder.
    fn default() -> Self {
        NotifySettings {
            email: EmailSettings {
                host: "127.0.0.1".into(),
                port: 25,
                tls: TlsMode::None,
                credentials: None,
                from: "Carepath Health Plan <notices@carepath.example>".into(),
                timeout_secs: 30,
            },
            fax: None,
            mail: MailSettings {
                batch_dir: std::env::temp_dir().join("carepath-print-batches"),
            },
            retry: RetryPolicy::default(),
            dispatch: DispatchOptions::default(),
        }
    }
}

/// The channels could not be set up (a bad From address, an unusable folder, ...).
#[derive(Debug, thiserror::Error)]
#[error("notification settings: {0}")]
pub struct SettingsError(pub String);

impl NotifySettings {
    /// Builds every channel; a misconfiguration fails here, at start.
    pub fn channels(&self) -> Result<Channels, SettingsError> {
        let err = |e: carepath_notify::ChannelError| SettingsError(e.to_string());
        let mut channels = Channels::new()
            .with(Arc::new(EmailChannel::new(&self.email).map_err(err)?))
            .with(Arc::new(MailChannel::new(&self.mail).map_err(err)?))
            .with(Arc::new(PortalChannel));
        if let Some(fax) = &self.fax {
            channels = channels.with(Arc::new(FaxChannel::new(fax.clone()).map_err(err)?));
        }
        Ok(channels)
    }
}
