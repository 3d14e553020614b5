//! A PAS inquiry Bundle: which request(s) a provider asks about.

use carepath_core::{Invalid, MemberId, Npi};
use serde_json::Value;

use super::request::{ClaimIdentifier, claim_identifier, member, provider_npi, the_claim};
use crate::json::Entries;

/// What an inquiry asks about.
#[derive(Debug, Clone, PartialEq)]
pub struct Inquiry {
    /// The identifier of the request asked about, when the inquiry names one.
    pub identifier: Option<ClaimIdentifier>,
    /// The member whose requests are asked about.
    pub member_id: Option<MemberId>,
    /// The provider who made the request (`Claim.provider`).
    pub requesting_npi: Option<Npi>,
    /// The request Bundle's identifier, echoed on each response Bundle.
    pub bundle_identifier: Option<Value>,
}

/// Reads a PAS inquiry Bundle: its Claim names the request by identifier, or the
/// member (and provider) whose requests to list.
pub fn inquiry(bundle: &Value) -> Result<Inquiry, Invalid> {
    let entries = Entries::of(bundle);
    let claim = the_claim(bundle, &entries, "inquiry")?;
    let mut invalid = Invalid::new();
    let identifier = if claim.list("identifier").is_empty() {
        None
    } else {
        Some(claim_identifier(&claim, &mut invalid))
    };
    let member_id = if claim.get("patient").is_some() {
        member(&claim, &entries, &mut invalid).0
    } else {
        None
    };
    let requesting_npi = claim
        .get("provider")
        .and_then(|p| provider_npi(&p, &entries, &mut invalid));
    if identifier.is_none() && member_id.is_none() {
        invalid.push(
            "Claim.identifier",
            "an inquiry names the request (Claim.identifier) or the member (Claim.patient)",
        );
    }
    invalid.into_result()?;
    Ok(Inquiry {
        identifier,
        member_id,
        requesting_npi,
        bundle_identifier: bundle.get("identifier").cloned(),
    })
}
