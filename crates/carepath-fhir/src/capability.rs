//! What the FHIR door offers: its CapabilityStatement and its SMART configuration.

use serde_json::{Value, json};

use crate::codes;

/// The scopes a client may be granted.
pub const SCOPES: [&str; 9] = [
    "system/Claim.c",
    "system/Claim.r",
    "system/Claim.cr",
    "system/ClaimResponse.r",
    "system/ClaimResponse.s",
    "system/Subscription.c",
    "system/Subscription.r",
    "system/Subscription.crd",
    "system/Questionnaire.r",
];

/// The token endpoint under the server's public origin.
pub fn token_endpoint(public_url: &str) -> String {
    format!("{}/auth/token", public_url.trim_end_matches('/'))
}

/// `GET /fhir/.well-known/smart-configuration`: SMART backend services with
/// asymmetric client authentication.
pub fn smart_configuration(public_url: &str) -> Value {
    json!({
        "issuer": public_url.trim_end_matches('/'),
        "token_endpoint": token_endpoint(public_url),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES,
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    })
}

/// `GET /fhir/metadata`: FHIR 4.0.1, JSON, the PAS operations, Subscription, and
/// SMART on FHIR as the security service.
pub fn capability_statement(public_url: &str, software_version: &str) -> Value {
    let base = public_url.trim_end_matches('/');
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-06",
        "publisher": "carepath",
        "kind": "instance",
        "software": {"name": "carepath", "version": software_version},
        "implementation": {"description": "carepath prior authorization", "url": format!("{base}/fhir")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "implementationGuide": [
            format!("{}/ImplementationGuide/hl7.fhir.us.davinci-pas", codes::PAS),
            "http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/hl7.fhir.uv.subscriptions-backport",
            "http://hl7.org/fhir/us/davinci-dtr/ImplementationGuide/hl7.fhir.us.davinci-dtr",
            "http://hl7.org/fhir/us/davinci-crd/ImplementationGuide/hl7.fhir.us.davinci-crd",
        ],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                }]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_endpoint(public_url)}],
                }],
                "description": "SMART backend services: client_credentials with a private_key_jwt client assertion (RS384 or ES384); system/ scopes.",
            },
            "resource": [
                {
                    "type": "Claim",
                    "supportedProfile": [
                        format!("{}/StructureDefinition/profile-claim", codes::PAS),
                        format!("{}/StructureDefinition/profile-claim-inquiry", codes::PAS),
                    ],
                    "operation": [
                        {"name": "submit", "definition": format!("{}/OperationDefinition/Claim-submit", codes::PAS)},
                        {"name": "inquire", "definition": format!("{}/OperationDefinition/Claim-inquiry", codes::PAS)},
                    ],
                },
                {
                    "type": "ClaimResponse",
                    "supportedProfile": [codes::PROFILE_CLAIM_RESPONSE, codes::PROFILE_INQUIRY_RESPONSE],
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": [{
                        "name": "identifier",
                        "type": "token",
                        "documentation": "The Claim's identifier of the request ([system|]value); a provider finds its own requests only.",
                    }],
                },
                {
                    "type": "Questionnaire",
                    "supportedProfile": [codes::PROFILE_DTR_QUESTIONNAIRE],
                    "interaction": [{"code": "read"}],
                    "operation": [{
                        "name": "questionnaire-package",
                        "definition": "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/questionnaire-package",
                        "documentation": "The Questionnaires the orders' coverage information (from the CDS Hooks services at /cds-services) or the canonicals asked for call for.",
                    }],
                },
                {
                    "type": "Subscription",
                    "supportedProfile": [codes::BACKPORT_SUBSCRIPTION, format!("{}/StructureDefinition/profile-subscription", codes::PAS)],
                    "interaction": [{"code": "create"}, {"code": "read"}, {"code": "delete"}],
                    "operation": [{
                        "name": "status",
                        "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
                    }],
                },
            ],
        }],
    })
}
