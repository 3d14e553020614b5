//! Fax through an HTTP fax gateway: the letter is laid out as a PDF and posted as JSON.
//!
//! The request is `POST <endpoint>` with an optional bearer token and the body
//! `{ "to", "from", "subject", "document_pdf_base64", "idempotency_key" }`. A 2xx
//! answer means the gateway accepted the fax; its body is kept as the receipt (its
//! `id`, `fax_id` or `job_id` field as the reference when there is one). 5xx answers,
//! 408, 429 and connection failures are retryable; other 4xx answers are permanent.
//! The gateway is trusted to honour `idempotency_key`, so a retried request after a
//! lost answer does not send the fax twice.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use carepath_core::ContactChannel;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::registry::expect_channel;
use super::{Channel, ChannelError, DeliveryReceipt};
use crate::letter::{LetterAddress, render_letter};
use crate::notice::{Destination, RenderedNotice};

/// The fax gateway to use.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaxSettings {
    /// The URL faxes are posted to.
    pub endpoint: String,
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// The plan's sending fax number, printed in the fax header.
    pub from: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for FaxSettings {
    /// Keeps the token out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaxSettings")
            .field("endpoint", &self.endpoint)
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .finish_non_exhaustive()
    }
}

fn default_timeout_secs() -> u64 {
    60
}

/// The JSON body the gateway receives.
#[derive(Debug, Serialize)]
struct FaxRequest<'a> {
    to: &'a str,
    from: &'a str,
    subject: &'a str,
    document_pdf_base64: String,
    idempotency_key: &'a str,
}

/// Sends notices as faxes through the gateway.
#[derive(Debug)]
pub struct FaxChannel {
    client: reqwest::Client,
    settings: FaxSettings,
}

impl FaxChannel {
    pub fn new(settings: FaxSettings) -> Result<Self, ChannelError> {
        reqwest::Url::parse(&settings.endpoint).map_err(|e| {
            ChannelError::permanent(format!("fax endpoint {:?}: {e}", settings.endpoint))
        })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .build()
            .map_err(|e| ChannelError::permanent(format!("http client: {e}")))?;
        Ok(Self { client, settings })
    }
}

#[async_trait]
impl Channel for FaxChannel {
    fn kind(&self) -> ContactChannel {
        ContactChannel::Fax
    }

    async fn deliver(&self, notice: &RenderedNotice) -> Result<DeliveryReceipt, ChannelError> {
        expect_channel(ContactChannel::Fax, notice)?;
        let Destination::Fax { number } = &notice.destination else {
            return Err(ChannelError::permanent("fax notice without a fax number"));
        };
        let letter = render_letter(notice, &LetterAddress::Fax(number.clone()))
            .map_err(ChannelError::permanent)?;
        let body = FaxRequest {
            to: number,
            from: &self.settings.from,
            subject: &notice.subject,
            document_pdf_base64: base64::engine::general_purpose::STANDARD.encode(&letter.pdf),
            idempotency_key: notice.key.as_str(),
        };
        let mut request = self.client.post(&self.settings.endpoint).json(&body);
        if let Some(token) = &self.settings.bearer_token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ChannelError::retryable(format!("fax gateway unreachable: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(DeliveryReceipt {
                channel: ContactChannel::Fax,
                reference: gateway_reference(&text).unwrap_or_else(|| notice.key.to_string()),
                detail: Some(text),
            });
        }
        let message = format!("fax gateway answered {status}: {}", truncate(&text, 300));
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(ChannelError::Retryable(message))
        } else {
            Err(ChannelError::Permanent(message))
        }
    }
}

/// The gateway's id for the fax, from a JSON answer.
fn gateway_reference(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    ["id", "fax_id", "job_id"]
        .iter()
        .find_map(|k| match value.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
