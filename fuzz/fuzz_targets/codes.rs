//! Fuzzes the validated code types: any string either parses to a value whose
//! canonical text reads back to the same value (as text and through serde), or is
//! rejected with a message.

#![no_main]

use std::fmt::Display;

use carepath_core::{
    ContactChannel, CountryCode, Icd10Code, LanguageTag, MemberId, NetworkStatus, Npi, PlanId,
    ProviderKind, Role, ServiceCode, ServiceCodeKind, Setting, Specialty, StaffId, StaffRole,
    Urgency,
};
use carepath_fuzz::assert_explained;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `text`; a value must be a fixed point of its canonical form.
fn round_trip<T, E>(
    text: &str,
    parse: fn(&str) -> Result<T, E>,
    as_str: fn(&T) -> &str,
) -> Option<T>
where
    T: PartialEq + std::fmt::Debug + Display + Serialize + DeserializeOwned,
    E: Display,
{
    let value = match parse(text) {
        Ok(value) => value,
        Err(e) => {
            assert_explained(&e.to_string(), text);
            return None;
        }
    };
    let canonical = as_str(&value);
    assert_eq!(value.to_string(), canonical, "Display differs from as_str");
    assert_eq!(canonical.trim(), canonical, "canonical form has spaces");
    let again = parse(canonical)
        .unwrap_or_else(|e| panic!("{canonical:?} (from {text:?}) does not parse again: {e}"));
    assert_eq!(again, value, "{text:?} does not read back the same");
    let json = serde_json::to_string(&value).expect("a code serializes");
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{json} (from {text:?}) does not deserialize: {e}"));
    assert_eq!(back, value, "{text:?} changes through serde");
    Some(value)
}

/// The named enums: a name parses to the value whose name it is.
fn named<T: Copy + PartialEq + std::fmt::Debug>(
    text: &str,
    parse: fn(&str) -> Result<T, carepath_core::CodeError>,
    as_str: fn(T) -> &'static str,
) {
    match parse(text) {
        Ok(value) => assert_eq!(parse(as_str(value)).ok(), Some(value)),
        Err(e) => assert_explained(&e.to_string(), text),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip(text, Npi::parse, Npi::as_str);
    if let Some(code) = round_trip(text, Icd10Code::parse, Icd10Code::as_str) {
        assert_eq!(code.category().len(), 3);
        assert!(code.as_str().starts_with(code.category()));
        assert!(
            code.in_range(&code, &code),
            "{code} is not in its own range"
        );
        let category = Icd10Code::parse(code.category()).expect("a category is a code");
        assert!(
            code.in_range(&category, &category),
            "{code} is outside {category}"
        );
        if let Some(subcode) = code.subcode() {
            assert!(!subcode.is_empty() && subcode.len() <= 4, "{code}");
        }
    }
    if let Some(code) = round_trip(text, ServiceCode::parse, ServiceCode::as_str) {
        assert!(
            code.in_range(&code, &code),
            "{code} is not in its own range"
        );
        let hcpcs = code.as_str().starts_with(|c: char| c.is_ascii_alphabetic());
        assert_eq!(code.kind() == ServiceCodeKind::Hcpcs, hcpcs, "{code}");
    }
    round_trip(text, MemberId::parse, MemberId::as_str);
    round_trip(text, PlanId::parse, PlanId::as_str);
    round_trip(text, StaffId::parse, StaffId::as_str);
    round_trip(text, Specialty::parse, Specialty::as_str);
    round_trip(text, CountryCode::parse, CountryCode::as_str);
    if let Some(tag) = round_trip(text, LanguageTag::parse, LanguageTag::as_str) {
        assert!(tag.as_str().starts_with(tag.primary()), "{tag}");
    }
    named(text, Role::parse, Role::as_str);
    named(text, Urgency::parse, Urgency::as_str);
    named(text, Setting::parse, Setting::as_str);
    named(text, ProviderKind::parse, ProviderKind::as_str);
    named(text, NetworkStatus::parse, NetworkStatus::as_str);
    named(text, ContactChannel::parse, ContactChannel::as_str);
    named(text, StaffRole::parse, StaffRole::as_str);
});
