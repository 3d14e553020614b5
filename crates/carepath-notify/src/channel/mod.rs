//! The channels notices leave by, behind one async trait, and the errors that tell a
//! dispatcher whether trying again can help.

mod email;
mod fax;
mod mail;
mod portal;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use carepath_core::ContactChannel;
use serde::{Deserialize, Serialize};

pub use email::{EmailChannel, EmailSettings, SmtpCredentials, TlsMode};
pub use fax::{FaxChannel, FaxSettings};
pub use mail::{MailChannel, MailSettings, ManifestEntry};
pub use portal::PortalChannel;

use crate::notice::RenderedNotice;

/// Proof that a channel accepted a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    pub channel: ContactChannel,
    /// The channel's own reference: the email Message-ID, the fax gateway's job id, the
    /// letter's file name in the print batch, or the portal inbox.
    pub reference: String,
    /// What the far end said, for the delivery record (an SMTP reply, the gateway's
    /// JSON answer).
    pub detail: Option<String>,
}

/// Why a delivery failed, split by whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The far end was unreachable or busy (connection refused, timeout, SMTP 4xx,
    /// HTTP 5xx): retry later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The far end refused this notice (bad address, HTTP 4xx, SMTP 5xx) or the
    /// notice cannot be sent on this channel: retrying will not help.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl ChannelError {
    pub fn retryable(reason: impl fmt::Display) -> Self {
        Self::Retryable(reason.to_string())
    }

    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// A way of getting a rendered notice to its recipient.
///
/// Implementations must be safe to call again with the same notice: a dispatcher
/// delivers at least once, so each channel passes the notice key on (as the email
/// Message-ID, the fax gateway's idempotency key, the letter's file name) or checks
/// it itself.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// The channel this delivers on; notices for another channel are refused.
    fn kind(&self) -> ContactChannel;

    async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError>;
}

/// The configured channels, picked by each notice's channel.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    channels: Vec<Arc<dyn Channel>>,
}

impl Channels {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the channel for `channel.kind()`.
    pub fn with(mut self, channel: Arc<dyn Channel>) -> Self {
        self.channels.retain(|c| c.kind() != channel.kind());
        self.channels.push(channel);
        self
    }

    pub fn get(&self, kind: ContactChannel) -> Option<&Arc<dyn Channel>> {
        self.channels.iter().find(|c| c.kind() == kind)
    }

    /// Delivers on the notice's channel. A channel that is not configured is a
    /// retryable failure: configuring it later lets the notice go.
    pub async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError> {
        match self.get(notice.channel) {
            Some(channel) => channel.deliver(notice).await,
            None => Err(ChannelError::retryable(format!(
                "no {} channel is configured",
                notice.channel
            ))),
        }
    }
}

/// Refuses a notice meant for another channel; every channel checks this first.
fn expect_channel(kind: ContactChannel, notice: &RenderedNotice) -> Result<(), ChannelError> {
    if notice.channel == kind && notice.destination.channel() == kind {
        return Ok(());
    }
    Err(ChannelError::permanent(format!(
        "notice {} is for the {} channel, not {kind}",
        notice.key,
        notice.destination.channel()
    )))
}
