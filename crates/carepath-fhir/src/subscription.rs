//! FHIR R4 Subscriptions (the Subscriptions Backport, rest-hook channel, the PAS
//! topic): the resource read into the application's command and written back, the
//! `$status` answer, and the notification Bundles sent to a subscriber. Pure.

use carepath_app::{
    precert::CaseView,
    subscriptions::{
        NewSubscription, Notification, PayloadContent, RenderNotification, Subscription,
        SubscriptionStatus,
    },
};
use carepath_core::{Invalid, Npi};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    codes,
    json::Node,
    pas::{self, ClaimIdentifier, FieldMap},
};

/// Longest filter criteria read.
const MAX_FILTER: usize = 256;

/// The application's field names of a subscription and the FHIR elements they are.
pub fn fields() -> FieldMap {
    let mut fields = FieldMap::new("Subscription");
    fields.insert("criteria", "Subscription.criteria");
    fields.insert("topic", "Subscription.criteria");
    fields.insert("filter_npi", "Subscription.criteria");
    fields.insert("channel.endpoint", "Subscription.channel.endpoint");
    fields.insert("endpoint", "Subscription.channel.endpoint");
    fields.insert("channel.header", "Subscription.channel.header");
    fields.insert("header", "Subscription.channel.header");
    fields
}

/// Reads a Subscription resource: the topic (`criteria`), the filter
/// (`orgIdentifier=<NPI>`), the rest-hook endpoint, the payload content and an
/// optional header.
pub fn new_subscription(resource: &Value) -> Result<NewSubscription, Invalid> {
    let mut invalid = Invalid::new();
    if resource.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        return Err(Invalid::field(
            "Subscription",
            "the body must be a Subscription (resourceType Subscription)",
        ));
    }
    let root = Node::resource(resource);
    let topic = root.str("criteria").unwrap_or_default().to_owned();
    let mut filter_npi = None;
    if let Some(criteria_ext) = root.get("_criteria") {
        for filter in criteria_ext.extensions(codes::BACKPORT_FILTER) {
            let value = filter.str("valueString").unwrap_or_default();
            let path = "Subscription.criteria.extension";
            if value.len() > MAX_FILTER {
                invalid.push(path, format!("at most {MAX_FILTER} characters"));
                continue;
            }
            match value.split_once('=') {
                Some(("orgIdentifier", npi)) => match Npi::parse(npi.trim()) {
                    Ok(npi) => filter_npi = Some(npi),
                    Err(e) => invalid.push(path, format!("orgIdentifier: {e}")),
                },
                _ => invalid.push(
                    path,
                    "the PAS topic filters on orgIdentifier=<the subscriber's NPI>",
                ),
            }
        }
    }
    let channel = root.get("channel");
    let channel_type = channel.as_ref().and_then(|c| c.str("type"));
    if channel_type != Some("rest-hook") {
        invalid.push("Subscription.channel.type", "must be 'rest-hook'");
    }
    let endpoint = channel
        .as_ref()
        .and_then(|c| c.str("endpoint"))
        .unwrap_or_default()
        .to_owned();
    if let Some(payload) = channel.as_ref().and_then(|c| c.str("payload"))
        && payload != codes_fhir_json()
    {
        invalid.push(
            "Subscription.channel.payload",
            "must be application/fhir+json",
        );
    }
    let content = match channel
        .as_ref()
        .and_then(|c| c.get("_payload"))
        .and_then(|p| p.extensions(codes::BACKPORT_CONTENT).into_iter().next())
        .and_then(|e| e.str("valueCode").map(str::to_owned))
    {
        None => PayloadContent::FullResource,
        Some(code) => PayloadContent::parse(&code).unwrap_or_else(|| {
            invalid.push(
                "Subscription.channel.payload.extension",
                "content must be full-resource or id-only",
            );
            PayloadContent::FullResource
        }),
    };
    let headers = channel
        .as_ref()
        .map(|c| c.list("header"))
        .unwrap_or_default();
    if headers.len() > 1 {
        invalid.push("Subscription.channel.header", "at most one header");
    }
    let header = headers
        .first()
        .and_then(|h| h.value().as_str())
        .map(str::to_owned);
    invalid.into_result()?;
    Ok(NewSubscription {
        topic,
        endpoint,
        content,
        header,
        filter_npi,
    })
}

fn codes_fhir_json() -> &'static str {
    "application/fhir+json"
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The Subscription resource for `subscription`.
pub fn resource(subscription: &Subscription) -> Value {
    let mut channel = json!({
        "type": "rest-hook",
        "endpoint": subscription.endpoint,
        "payload": codes_fhir_json(),
        "_payload": {"extension": [{"url": codes::BACKPORT_CONTENT, "valueCode": subscription.content.as_str()}]},
    });
    if subscription.header.is_some() {
        // The header is a secret of the subscriber's endpoint: never read back.
        channel["header"] = json!(["(set; not shown)"]);
    }
    let mut resource = json!({
        "resourceType": "Subscription",
        "id": subscription.id,
        "meta": {"profile": [codes::BACKPORT_SUBSCRIPTION, format!("{}/StructureDefinition/profile-subscription", codes::PAS)]},
        "status": subscription.status.as_str(),
        "reason": "Decisions on prior-authorization requests",
        "criteria": subscription.topic,
        "_criteria": {"extension": [{"url": codes::BACKPORT_FILTER, "valueString": format!("orgIdentifier={}", subscription.owner_npi)}]},
        "channel": channel,
    });
    if let Some(error) = &subscription.last_error {
        resource["error"] = json!(error);
    }
    if let Some(end) = subscription.ended_at {
        resource["end"] = json!(instant(end));
    }
    resource
}

/// The backport's SubscriptionStatus Parameters.
fn status_parameters(
    subscription: &Subscription,
    status: &str,
    kind: &str,
    events_since_start: u64,
    base: &str,
) -> Value {
    json!({
        "resourceType": "Parameters",
        "meta": {"profile": [codes::BACKPORT_STATUS]},
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": format!("{base}/Subscription/{}", subscription.id)}},
            {"name": "topic", "valueCanonical": subscription.topic},
            {"name": "status", "valueCode": status},
            {"name": "type", "valueCode": kind},
            {"name": "events-since-subscription-start", "valueString": events_since_start.to_string()},
        ],
    })
}

/// `GET Subscription/{id}/$status`: a searchset Bundle with the status Parameters.
pub fn status_bundle(status: &SubscriptionStatus, base: &str, now: DateTime<Utc>) -> Value {
    let mut parameters = status_parameters(
        &status.subscription,
        status.status.as_str(),
        "query-status",
        status.events_since_start,
        base,
    );
    if let Some(error) = &status.last_error
        && let Some(list) = parameters["parameter"].as_array_mut()
    {
        list.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": instant(now),
        "total": 1,
        "entry": [{
            "fullUrl": format!("{base}/Subscription/{}/$status", status.subscription.id),
            "resource": parameters,
            "search": {"mode": "match"},
        }],
    })
}

/// A notification: a history Bundle whose first entry is the status Parameters
/// (with the event number) and, for `full-resource`, the PAS response Bundle of
/// the request as it now stands.
pub fn notification_bundle(
    subscription: &Subscription,
    notification: &Notification,
    case: Option<&CaseView>,
    base: &str,
) -> Value {
    let focus_url = format!("{base}/ClaimResponse/{}", notification.case_id);
    let mut parameters = status_parameters(
        subscription,
        subscription.status.as_str(),
        "event-notification",
        notification
            .event_number
            .max(subscription.events_since_start),
        base,
    );
    if let Some(list) = parameters["parameter"].as_array_mut() {
        list.push(json!({
            "name": "notification-event",
            "part": [
                {"name": "event-number", "valueString": notification.event_number.to_string()},
                {"name": "timestamp", "valueInstant": instant(notification.occurred_at)},
                {"name": "focus", "valueReference": {"reference": focus_url}},
            ],
        }));
    }
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{}", notification.id),
        "resource": parameters,
        "request": {"method": "GET", "url": format!("{base}/Subscription/{}/$status", subscription.id)},
        "response": {"status": "200"},
    })];
    if let Some(view) = case {
        let identifier = ClaimIdentifier {
            system: None,
            value: view.request_id.clone(),
        };
        let bundle = pas::response_bundle(
            view,
            &identifier,
            None,
            codes::PROFILE_RESPONSE_BUNDLE,
            codes::PROFILE_CLAIM_RESPONSE,
            base,
        );
        entries.push(json!({
            "fullUrl": focus_url,
            "resource": bundle,
            "request": {"method": "GET", "url": focus_url},
            "response": {"status": "200"},
        }));
    }
    json!({
        "resourceType": "Bundle",
        "id": notification.id,
        "meta": {"profile": [codes::BACKPORT_NOTIFICATION]},
        "type": "history",
        "timestamp": instant(notification.occurred_at),
        "entry": entries,
    })
}

/// Renders notifications as FHIR Bundles for the application's delivery loop.
#[derive(Debug, Clone)]
pub struct FhirNotifications {
    /// The FHIR base URL references are written under.
    pub base: String,
}

impl RenderNotification for FhirNotifications {
    fn render(
        &self,
        subscription: &Subscription,
        notification: &Notification,
        case: Option<&CaseView>,
    ) -> Vec<u8> {
        notification_bundle(subscription, notification, case, &self.base)
            .to_string()
            .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_subscription_reads() {
        let resource: Value =
            serde_json::from_str(include_str!("../examples/subscription.json")).unwrap();
        let new = new_subscription(&resource).unwrap();
        assert_eq!(new.topic, codes::PAS_TOPIC);
        assert_eq!(new.endpoint, "http://127.0.0.1:9999/notify");
        assert_eq!(new.content, PayloadContent::FullResource);
        assert_eq!(new.filter_npi.unwrap().to_string(), "1184649790");
        assert_eq!(new.header, None);
    }

    #[test]
    fn a_subscription_on_another_channel_or_filter_is_refused_by_element() {
        let mut resource: Value =
            serde_json::from_str(include_str!("../examples/subscription.json")).unwrap();
        resource["channel"]["type"] = json!("websocket");
        resource["_criteria"]["extension"][0]["valueString"] = json!("patient=M100001");
        resource["channel"]["header"] = json!(["a: 1", "b: 2"]);
        let invalid = new_subscription(&resource).unwrap_err();
        let fields: Vec<&str> = invalid
            .violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "Subscription.criteria.extension",
                "Subscription.channel.type",
                "Subscription.channel.header"
            ]
        );
    }
}
