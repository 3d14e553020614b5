//! The code systems, profiles and extensions the door reads and writes.

/// National Provider Identifier.
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
/// CPT procedure codes.
pub const CPT: &str = "http://www.ama-assn.org/go/cpt";
/// HCPCS codes (the PAS guide's examples also carry CPT codes under it).
pub const HCPCS: &str = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets";
/// ICD-10-CM diagnoses.
pub const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// CMS place-of-service codes.
pub const PLACE_OF_SERVICE: &str =
    "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set";
/// Claim priority.
pub const PROCESS_PRIORITY: &str = "http://terminology.hl7.org/CodeSystem/processpriority";
/// Claim type.
pub const CLAIM_TYPE: &str = "http://terminology.hl7.org/CodeSystem/claim-type";
/// Adjudication category.
pub const ADJUDICATION: &str = "http://terminology.hl7.org/CodeSystem/adjudication";
/// X12 306 review action codes.
pub const X12_REVIEW_ACTION: &str = "https://codesystem.x12.org/005010/306";
/// carepath's precertification documents (`clinical_notes`): a DocumentReference's type.
pub const CAREPATH_DOCUMENT: &str = "urn:carepath:precert-document";
/// carepath's reasons for an adverse decision.
pub const CAREPATH_REASON: &str = "urn:carepath:precert-reason";
/// carepath's clinical questions and documents asked for in a pended request.
pub const CAREPATH_MISSING: &str = "urn:carepath:precert-missing";
/// carepath member ids, as a Patient identifier.
pub const CAREPATH_MEMBER: &str = "urn:carepath:member-id";

/// The Da Vinci PAS canonical base.
pub const PAS: &str = "http://hl7.org/fhir/us/davinci-pas";
/// Profile of a PAS request Bundle.
pub const PROFILE_REQUEST_BUNDLE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-request-bundle";
/// Profile of a PAS response Bundle.
pub const PROFILE_RESPONSE_BUNDLE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-response-bundle";
/// Profile of a PAS inquiry response Bundle.
pub const PROFILE_INQUIRY_RESPONSE_BUNDLE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-pas-inquiry-response-bundle";
/// Profile of a PAS ClaimResponse.
pub const PROFILE_CLAIM_RESPONSE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claimresponse";
/// Profile of a PAS inquiry ClaimResponse.
pub const PROFILE_INQUIRY_RESPONSE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/profile-claiminquiryresponse";
/// The review-action extension of an adjudication.
pub const EXT_REVIEW_ACTION: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction";
/// The order (ServiceRequest, DeviceRequest, MedicationRequest) a Claim item asks
/// for.
pub const EXT_REQUESTED_SERVICE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-requestedService";
/// An item's authorization period.
pub const EXT_ITEM_PREAUTH_PERIOD: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-itemPreAuthPeriod";
/// An item's authorized provider.
pub const EXT_ITEM_AUTHORIZED_PROVIDER: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-itemAuthorizedProvider";
/// The date an item's authorization was issued.
pub const EXT_ITEM_PREAUTH_ISSUE_DATE: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-itemPreAuthIssueDate";
/// Whether a person reviewed the request.
pub const EXT_REVIEWER: &str =
    "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-claimResponseReviewer";
/// The PAS subscription topic.
pub const PAS_TOPIC: &str =
    "http://hl7.org/fhir/us/davinci-pas/SubscriptionTopic/PASSubscriptionTopic";
/// Backport: a subscription's filter.
pub const BACKPORT_FILTER: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
/// Backport: how much a notification carries.
pub const BACKPORT_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// Backport: profile of a subscription.
pub const BACKPORT_SUBSCRIPTION: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
/// Backport: profile of a notification's status Parameters.
pub const BACKPORT_STATUS: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// Backport: profile of a notification Bundle.
pub const BACKPORT_NOTIFICATION: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";

/// Da Vinci CRD: the coverage-information extension on an order.
pub const EXT_COVERAGE_INFORMATION: &str =
    "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information";
/// Da Vinci CRD: reasons for a coverage assertion (gold-card, auth-out-network) and
/// card types (a card's `source.topic`, coverage-info).
pub const CRD_TEMP: &str = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp";
/// Da Vinci DTR: profile of a Questionnaire.
pub const PROFILE_DTR_QUESTIONNAIRE: &str =
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-std-questionnaire";
/// Da Vinci DTR: profile of a QuestionnaireResponse.
pub const PROFILE_DTR_RESPONSE: &str =
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-questionnaireresponse";
/// Da Vinci DTR: a QuestionnaireResponse's context (the order and coverage it is for).
pub const EXT_DTR_CONTEXT: &str =
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/qr-context";
/// carepath's precertification rules (a Questionnaire's code).
pub const CAREPATH_RULE: &str = "urn:carepath:precert-rule";
/// carepath's choices of a code question (a question's `options`).
pub const CAREPATH_ANSWER: &str = "urn:carepath:precert-answer";
