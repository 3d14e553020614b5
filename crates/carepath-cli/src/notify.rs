//! The flags (with environment fallbacks) that say where notices go out: the SMTP
//! server, the fax gateway, the print-batch folder. They build the application's
//! [`NotifySettings`]; secrets never reach a log line (the `Debug` output leaves them
//! out).

use std::{path::PathBuf, time::Duration};

pub use carepath_app::notify::settings::{DispatchOptions, NotifySettings, SettingsError};
use carepath_notify::{
    EmailSettings, FaxSettings, MailSettings, RetryPolicy, SmtpCredentials, TlsMode,
};

/// The notification settings of a serving binary (flattened into `ServeArgs`).
#[derive(Clone, clap::Args)]
pub struct NotifyArgs {
    /// SMTP server notices are emailed through.
    #[arg(long, env = "CAREPATH_SMTP_HOST", default_value = "127.0.0.1")]
    pub smtp_host: String,
    #[arg(long, env = "CAREPATH_SMTP_PORT", default_value_t = 25)]
    pub smtp_port: u16,
    /// `none` (a local relay), `starttls` (port 587) or `tls` (port 465).
    #[arg(long, env = "CAREPATH_SMTP_TLS", default_value = "none")]
    pub smtp_tls: String,
    /// The From mailbox of notices.
    #[arg(
        long,
        env = "CAREPATH_SMTP_FROM",
        default_value = "Carepath Health Plan <notices@carepath.example>"
    )]
    pub smtp_from: String,
    #[arg(long, env = "CAREPATH_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    #[arg(long, env = "CAREPATH_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// URL of the HTTP fax gateway; unset, fax notices wait (retrying) until it is set.
    #[arg(long, env = "CAREPATH_FAX_GATEWAY_URL")]
    pub fax_gateway_url: Option<String>,
    #[arg(long, env = "CAREPATH_FAX_GATEWAY_TOKEN", hide_env_values = true)]
    pub fax_gateway_token: Option<String>,
    /// The plan's sending fax number.
    #[arg(long, env = "CAREPATH_FAX_FROM", default_value = "1-800-555-0143")]
    pub fax_from: String,
    /// Folder postal letters (PDF) and their manifest are written to. Defaults to
    /// `print-batches` beside a SQLite database, or in the temporary folder.
    #[arg(long, env = "CAREPATH_PRINT_BATCH_DIR")]
    pub print_batch_dir: Option<PathBuf>,
    /// Seconds the dispatcher keeps a claimed notice while sending it. After a crash,
    /// a notice left `sending` is taken over (and sent again) once its lease has run
    /// out; keep it above the slowest channel's timeout.
    #[arg(long, env = "CAREPATH_NOTICE_LEASE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub notice_lease_secs: u64,
    /// Seconds before a notice whose sending failed is tried again; the wait doubles
    /// after each failure up to --notice-retry-max-secs.
    #[arg(long, env = "CAREPATH_NOTICE_RETRY_FIRST_SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub notice_retry_first_secs: u32,
    /// The longest wait between two attempts at a notice, in seconds.
    #[arg(long, env = "CAREPATH_NOTICE_RETRY_MAX_SECS", default_value_t = 6 * 3600, value_parser = clap::value_parser!(u32).range(1..))]
    pub notice_retry_max_secs: u32,
    /// Attempts at a notice before it is given up (listed as failed for an admin).
    #[arg(long, env = "CAREPATH_NOTICE_RETRY_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub notice_retry_attempts: u32,
}

impl std::fmt::Debug for NotifyArgs {
    /// Leaves the SMTP password and the fax token out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyArgs")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_from", &self.smtp_from)
            .field("smtp_username", &self.smtp_username)
            .field("fax_gateway_url", &self.fax_gateway_url)
            .field("fax_from", &self.fax_from)
            .field("print_batch_dir", &self.print_batch_dir)
            .field("notice_lease_secs", &self.notice_lease_secs)
            .field("notice_retry_first_secs", &self.notice_retry_first_secs)
            .field("notice_retry_max_secs", &self.notice_retry_max_secs)
            .field("notice_retry_attempts", &self.notice_retry_attempts)
            .finish_non_exhaustive()
    }
}

impl NotifyArgs {
    /// The settings these flags name; `database_url` places the default print folder.
    pub fn settings(&self, database_url: &str) -> Result<NotifySettings, SettingsError> {
        let tls = match self.smtp_tls.trim() {
            "none" => TlsMode::None,
            "starttls" => TlsMode::Starttls,
            "tls" => TlsMode::Tls,
            other => {
                return Err(SettingsError(format!(
                    "--smtp-tls {other:?}: expected none, starttls or tls"
                )));
            }
        };
        let credentials = match (&self.smtp_username, &self.smtp_password) {
            (Some(username), Some(password)) => Some(SmtpCredentials {
                username: username.clone(),
                password: password.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(SettingsError(
                    "--smtp-username and --smtp-password go together".into(),
                ));
            }
        };
        if self.notice_retry_max_secs < self.notice_retry_first_secs {
            return Err(SettingsError(format!(
                "--notice-retry-max-secs {} is less than --notice-retry-first-secs {}",
                self.notice_retry_max_secs, self.notice_retry_first_secs
            )));
        }
        let batch_dir = self
            .print_batch_dir
            .clone()
            .unwrap_or_else(|| default_print_dir(database_url));
        let defaults = NotifySettings::default();
        Ok(NotifySettings {
            email: EmailSettings {
                host: self.smtp_host.clone(),
                port: self.smtp_port,
                tls,
                credentials,
                from: self.smtp_from.clone(),
                ..defaults.email
            },
            fax: self.fax_gateway_url.as_ref().map(|url| FaxSettings {
                endpoint: url.clone(),
                bearer_token: self.fax_gateway_token.clone(),
                from: self.fax_from.clone(),
                timeout_secs: 60,
            }),
            mail: MailSettings { batch_dir },
            dispatch: DispatchOptions {
                lease: Duration::from_secs(self.notice_lease_secs),
                ..defaults.dispatch
            },
            retry: RetryPolicy {
                first_delay: chrono::Duration::seconds(i64::from(self.notice_retry_first_secs)),
                max_delay: chrono::Duration::seconds(i64::from(self.notice_retry_max_secs)),
                max_attempts: self.notice_retry_attempts,
            },
        })
    }
}

/// `print-batches` beside a SQLite file, else in the temporary folder.
fn default_print_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .filter(|p| !p.is_empty() && *p != ":memory:");
    match file {
        Some(path) => PathBuf::from(path)
            .parent()
            .map(|d| d.join("print-batches"))
            .unwrap_or_else(|| PathBuf::from("print-batches")),
        None => std::env::temp_dir().join("carepath-print-batches"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        notify: NotifyArgs,
    }

    #[test]
    fn flags_build_settings_and_keep_secrets_out_of_debug() {
        let cli = Cli::parse_from([
            "x",
            "--smtp-port",
            "2525",
            "--smtp-tls",
            "starttls",
            "--smtp-username",
            "notices",
            "--smtp-password",
            "s3cret-pw",
            "--fax-gateway-url",
            "http://127.0.0.1:9/fax",
            "--fax-gateway-token",
            "tok-123",
        ]);
        let s = cli.notify.settings("sqlite:///var/lib/cp/x.db").unwrap();
        assert_eq!((s.email.port, s.email.tls), (2525, TlsMode::Starttls));
        assert_eq!(s.mail.batch_dir, PathBuf::from("/var/lib/cp/print-batches"));
        assert_eq!(s.fax.as_ref().unwrap().endpoint, "http://127.0.0.1:9/fax");
        let shown = format!("{:?} {:?}", cli.notify, s);
        assert!(
            !shown.contains("s3cret-pw") && !shown.contains("tok-123"),
            "{shown}"
        );
    }

    #[test]
    fn the_notice_retry_schedule_is_set_by_flags() {
        let cli = Cli::parse_from(["x"]);
        let s = cli.notify.settings("sqlite://a.db").unwrap();
        assert_eq!(s.retry, RetryPolicy::default());
        let cli = Cli::parse_from([
            "x",
            "--notice-retry-first-secs",
            "5",
            "--notice-retry-max-secs",
            "40",
            "--notice-retry-attempts",
            "3",
        ]);
        let s = cli.notify.settings("sqlite://a.db").unwrap();
        assert_eq!(s.retry.max_attempts, 3);
        let waits: Vec<i64> = (1..=5).map(|a| s.retry.delay(a).num_seconds()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 40]);
    }

    #[test]
    fn bad_flags_are_refused() {
        let cli = Cli::parse_from(["x", "--smtp-tls", "maybe"]);
        assert!(cli.notify.settings("sqlite://a.db").is_err());
        let cli = Cli::parse_from(["x", "--smtp-username", "u"]);
        assert!(cli.notify.settings("sqlite://a.db").is_err());
        let cli = Cli::parse_from([
            "x",
            "--notice-retry-first-secs",
            "600",
            "--notice-retry-max-secs",
            "60",
        ]);
        let err = cli.notify.settings("sqlite://a.db").unwrap_err();
        assert_eq!(
            err.0,
            "--notice-retry-max-secs 60 is less than --notice-retry-first-secs 600"
        );
        assert!(Cli::try_parse_from(["x", "--notice-retry-attempts", "0"]).is_err());
        let cli = Cli::parse_from(["x"]);
        let s = cli.notify.settings("postgres://h/db").unwrap();
        assert!(s.fax.is_none());
        assert!(s.mail.batch_dir.ends_with("carepath-print-batches"));
        assert_eq!(
            default_print_dir("sqlite://carepath.db"),
            PathBuf::from("print-batches")
        );
    }
}
