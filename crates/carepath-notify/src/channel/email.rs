//! Email over SMTP with lettre: plain text, plus an HTML alternative when the template
//! has one.

use std::time::Duration;

use async_trait::async_trait;
use carepath_core::ContactChannel;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::registry::expect_channel;
use super::{Channel, ChannelError, DeliveryReceipt};
use crate::notice::{Destination, RenderedNotice};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text: only for a relay on the same host or a test server.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A user name and password for SMTP AUTH.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SmtpCredentials {
    /// Keeps the password out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where and how to send email.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    #[serde(default)]
    pub credentials: Option<SmtpCredentials>,
    /// The From mailbox, e.g. `Carepath Health Plan <notices@carepath.example>`; its
    /// domain also names the Message-IDs.
    pub from: String,
    /// Per-command timeout, so a stalled server becomes a retryable failure.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    30
}

/// Sends notices as email through one SMTP server, over a connection pool.
#[derive(Debug)]
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The From domain, for Message-IDs.
    domain: String,
}

impl EmailChannel {
    /// Builds the channel; fails on a bad From address or TLS set-up, so a
    /// misconfiguration shows at start rather than on the first notice.
    pub fn new(settings: &EmailSettings) -> Result<Self, ChannelError> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            ChannelError::permanent(format!("from address {:?}: {e}", settings.from))
        })?;
        let domain = from.email.domain().to_owned();
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls | TlsMode::Tls => {
                let params = TlsParameters::new(settings.host.clone())
                    .map_err(|e| ChannelError::permanent(format!("tls set-up: {e}")))?;
                if settings.tls == TlsMode::Starttls {
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(settings.timeout_secs)));
        if let Some(c) = &settings.credentials {
            builder = builder.credentials(Credentials::new(c.username.clone(), c.password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            domain,
        })
    }

    /// The message for `notice`. Its Message-ID is derived from the notice key, so a
    /// message sent twice after a crash carries the same id and mail systems can fold
    /// the copies.
    fn message(&self, notice: &RenderedNotice, to: &str) -> Result<Message, ChannelError> {
        let address = to
            .parse()
            .map_err(|e| ChannelError::permanent(format!("recipient address {to:?}: {e}")))?;
        let to = Mailbox::new(Some(notice.recipient_name.clone()), address);
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(notice.subject.clone())
            .message_id(Some(self.message_id(notice)));
        let text = notice.text_body();
        let built = match &notice.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            ),
        };
        built.map_err(|e| ChannelError::permanent(format!("cannot build message: {e}")))
    }

    fn message_id(&self, notice: &RenderedNotice) -> String {
        format!("<notice-{}@{}>", notice.key, self.domain)
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ContactChannel {
        ContactChannel::Email
    }

    async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError> {
        expect_channel(ContactChannel::Email, notice)?;
        let Destination::Email { address } = &notice.destination else {
            return Err(ChannelError::permanent(
                "email notice without an email address",
            ));
        };
        let message = self.message(notice, address)?;
        let response = self.transport.send(message).await.map_err(classify)?;
        Ok(DeliveryReceipt {
            channel: ContactChannel::Email,
            reference: self.message_id(notice),
            detail: Some(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            )),
        })
    }
}

/// SMTP 5xx replies are permanent; everything else (4xx replies, refused connections,
/// timeouts, TLS or client trouble, often a configuration being fixed) may pass on a
/// later try.
fn classify(e: lettre::transport::smtp::Error) -> ChannelError {
    if e.is_permanent() {
        ChannelError::permanent(format!("smtp: {e}"))
    } else {
        ChannelError::retryable(format!("smtp: {e}"))
    }
}
