//! The channel trait every adapter implements, and the registry that picks the
//! adapter for a notice's channel.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use carepath_core::ContactChannel;

use super::{ChannelError, DeliveryReceipt};
use crate::notice::RenderedNotice;

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
pub(super) fn expect_channel(
    kind: ContactChannel,
    notice: &RenderedNotice,
) -> Result<(), ChannelError> {
    if notice.channel == kind && notice.destination.channel() == kind {
        return Ok(());
    }
    Err(ChannelError::permanent(format!(
        "notice {} is for the {} channel, not {kind}",
        notice.key,
        notice.destination.channel()
    )))
}
