//! Validated codes and identifiers: NPI, ICD-10-CM, CPT/HCPCS, ids, specialties,
//! countries and languages.
//!
//! Each is a newtype over its canonical string with a private field, so holding one is
//! proof that it was checked ("parse, don't validate"). They serialize as plain strings
//! and validate again when deserialized, so a bad code in a data file or a request is
//! rejected where it enters.

use std::fmt;
use std::str::FromStr;

/// Why a code or identifier was rejected. Messages are lowercase and say what a valid
/// value looks like, since they go straight back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("npi must be 10 digits")]
    NpiLength,
    #[error("npi check digit does not match")]
    NpiCheckDigit,
    #[error(
        "icd-10-cm code must be a letter, a digit and a letter or digit, optionally followed by a dot and 1 to 4 letters or digits (e.g. C50.911)"
    )]
    Icd10Shape,
    #[error(
        "service code must be a cpt code (5 digits, or 4 digits and F or T) or a hcpcs level ii code (a letter A to V and 4 digits)"
    )]
    ServiceCodeShape,
    #[error("{what} must be 3 to 32 letters, digits, '-' or '_'")]
    IdShape { what: &'static str },
    #[error(
        "specialty must be 2 to 48 lowercase letters or '_', starting and ending with a letter (e.g. medical_oncology)"
    )]
    SpecialtyShape,
    #[error("country must be an iso 3166-1 alpha-2 code: 2 letters (e.g. GB)")]
    CountryShape,
    #[error(
        "language must be a bcp 47 tag: 2 or 3 letters, optionally '-' and a 2-letter or 3-digit region (e.g. en, es-419)"
    )]
    LanguageShape,
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    Unknown {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Implements the string plumbing every code type shares: `as_str`, `Display`,
/// `FromStr`, `AsRef<str>` and the `String` conversions serde uses.
macro_rules! string_code {
    ($ty:ident) => {
        impl $ty {
            /// The canonical form, as stored and sent on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = CodeError;
            fn from_str(s: &str) -> Result<Self, CodeError> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = CodeError;
            fn try_from(s: String) -> Result<Self, CodeError> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = CodeError;
            fn try_from(s: &str) -> Result<Self, CodeError> {
                Self::parse(s)
            }
        }

        impl From<$ty> for String {
            fn from(code: $ty) -> String {
                code.0
            }
        }
    };
}

/// Implements `as_str`, `parse`, `Display` and `FromStr` for a fieldless enum from one
/// table, so the wire names and the serde names cannot drift apart.
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The snake_case name used in JSON, on the wire and in logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Parses the snake_case name.
            pub fn parse(s: &str) -> Result<Self, $crate::codes::CodeError> {
                match s.trim() {
                    $($name => Ok($ty::$variant),)+
                    other => Err($crate::codes::CodeError::Unknown {
                        what: $what,
                        value: other.to_owned(),
                        expected: concat!($($name, ", "),+).trim_end_matches(", "),
                    }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::codes::CodeError;
            fn from_str(s: &str) -> Result<Self, $crate::codes::CodeError> {
                Self::parse(s)
            }
        }
    };
}
pub(crate) use named_enum;

/// A National Provider Identifier: the key every provider is known by.
///
/// Ten digits whose last is a Luhn check digit computed over `80840` followed by the
/// first nine, so most typos are caught before a lookup.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Npi(String);
string_code!(Npi);

impl Npi {
    /// Accepts exactly ten ASCII digits with a matching check digit.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty { what: "npi" });
        }
        if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::NpiLength);
        }
        let expected = Self::check_digit(&s[..9]);
        if s.as_bytes()[9] - b'0' != expected {
            return Err(CodeError::NpiCheckDigit);
        }
        Ok(Self(s.to_owned()))
    }

    /// The Luhn check digit for nine leading digits, over the `80840` card-issuer
    /// prefix. Callers must pass nine ASCII digits.
    fn check_digit(first_nine: &str) -> u8 {
        let digits = b"80840"
            .iter()
            .chain(first_nine.as_bytes())
            .map(|b| b - b'0');
        // Doubling starts from the rightmost digit of the payload, since the check
        // digit will be appended to its right.
        let sum: u32 = digits
            .rev()
            .enumerate()
            .map(|(i, d)| {
                let d = u32::from(d);
                if i % 2 == 0 {
                    let doubled = d * 2;
                    if doubled > 9 { doubled - 9 } else { doubled }
                } else {
                    d
                }
            })
            .sum();
        ((10 - sum % 10) % 10) as u8
    }
}

/// An ICD-10-CM diagnosis code, such as `C50.911` or `N18.6`.
///
/// Canonical form is uppercase with the dot after the three-character category, so
/// `c50911` and `C50.911` are the same code and compare equal.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Icd10Code(String);
string_code!(Icd10Code);

impl Icd10Code {
    /// Accepts upper or lower case, with or without the dot.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty {
                what: "icd-10-cm code",
            });
        }
        let upper = s.to_ascii_uppercase();
        let (category, subcode) = match upper.split_once('.') {
            Some((category, subcode)) => {
                if subcode.is_empty() {
                    return Err(CodeError::Icd10Shape);
                }
                (category, subcode)
            }
            None if upper.len() > 3 && upper.is_char_boundary(3) => upper.split_at(3),
            None => (upper.as_str(), ""),
        };
        let c = category.as_bytes();
        let category_ok = c.len() == 3
            && c[0].is_ascii_uppercase()
            && c[1].is_ascii_digit()
            && c[2].is_ascii_alphanumeric();
        let subcode_ok = subcode.len() <= 4 && subcode.bytes().all(|b| b.is_ascii_alphanumeric());
        if !category_ok || !subcode_ok {
            return Err(CodeError::Icd10Shape);
        }
        if subcode.is_empty() {
            Ok(Self(category.to_owned()))
        } else {
            Ok(Self(format!("{category}.{subcode}")))
        }
    }

    /// The three-character category (`C50` for `C50.911`), the level most coverage
    /// rules are written at.
    pub fn category(&self) -> &str {
        &self.0[..3]
    }

    /// The characters after the dot, if any (`911` for `C50.911`).
    pub fn subcode(&self) -> Option<&str> {
        self.0.get(4..)
    }

    /// Whether this code falls in the inclusive range `from`..=`to`, as coverage lists
    /// write them (`C00`–`D49`, `C50`–`C50`, `M17.0`–`M17.9`).
    ///
    /// Ranges are hierarchical: a bound stands for itself and every code beneath it, so
    /// `C50.911` is inside `C50`–`C50` and inside `C50.9`–`C50.9`. Concretely, the code
    /// must sort at or after `from`, and its prefix of the same length as `to` must sort
    /// at or before `to`. For bounds without a subcode this is a comparison of
    /// categories.
    pub fn in_range(&self, from: &Icd10Code, to: &Icd10Code) -> bool {
        let upper_prefix = self.0.get(..to.0.len()).unwrap_or(&self.0);
        self.0.as_str() >= from.0.as_str() && upper_prefix <= to.0.as_str()
    }
}

/// Whether a service is described with a CPT or a HCPCS Level II code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceCodeKind {
    /// AMA Current Procedural Terminology: Category I (`70553`), II (`0001F`), III
    /// (`0042T`).
    Cpt,
    /// HCPCS Level II: drugs, equipment and supplies (`J9355`, `E0784`).
    Hcpcs,
}

/// A procedure or service code: CPT or HCPCS Level II, uppercase.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceCode(String);
string_code!(ServiceCode);

/// The finer shape of a service code, so ranges never mix CPT categories.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ServiceShape {
    CptCategoryI,
    CptCategoryII,
    CptCategoryIII,
    Hcpcs,
}

impl ServiceCode {
    /// Accepts CPT Category I (5 digits), II (4 digits and `F`), III (4 digits and `T`)
    /// and HCPCS Level II (a letter `A`–`V` and 4 digits), in either case.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty {
                what: "service code",
            });
        }
        let upper = s.to_ascii_uppercase();
        if Self::shape_of(&upper).is_none() {
            return Err(CodeError::ServiceCodeShape);
        }
        Ok(Self(upper))
    }

    fn shape_of(s: &str) -> Option<ServiceShape> {
        let b = s.as_bytes();
        if b.len() != 5 || !b[1..4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        match (b[0], b[4]) {
            (b'0'..=b'9', b'0'..=b'9') => Some(ServiceShape::CptCategoryI),
            (b'0'..=b'9', b'F') => Some(ServiceShape::CptCategoryII),
            (b'0'..=b'9', b'T') => Some(ServiceShape::CptCategoryIII),
            (b'A'..=b'V', b'0'..=b'9') => Some(ServiceShape::Hcpcs),
            _ => None,
        }
    }

    fn shape(&self) -> ServiceShape {
        // Only parse builds a ServiceCode, and it checked the shape.
        Self::shape_of(&self.0).unwrap_or(ServiceShape::CptCategoryI)
    }

    /// CPT or HCPCS, which decides which code set a rule's range belongs to.
    pub fn kind(&self) -> ServiceCodeKind {
        match self.shape() {
            ServiceShape::Hcpcs => ServiceCodeKind::Hcpcs,
            _ => ServiceCodeKind::Cpt,
        }
    }

    /// Whether this code is in the inclusive range `from`..=`to` (`70010`–`79999`,
    /// `J9000`–`J9999`).
    ///
    /// The three codes must have the same shape (CPT Category I, II or III, or HCPCS),
    /// so `0001F` is never inside a Category I range even where the strings would sort
    /// between its bounds.
    pub fn in_range(&self, from: &ServiceCode, to: &ServiceCode) -> bool {
        let shape = self.shape();
        shape == from.shape() && shape == to.shape() && from <= self && self <= to
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

macro_rules! id_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);
        string_code!($ty);

        impl $ty {
            /// Accepts 3 to 32 ASCII letters, digits, `-` or `_`; case is kept.
            pub fn parse(s: &str) -> Result<Self, CodeError> {
                let s = s.trim();
                if s.is_empty() {
                    return Err(CodeError::Empty { what: $what });
                }
                if !(3..=32).contains(&s.len()) || !s.chars().all(is_id_char) {
                    return Err(CodeError::IdShape { what: $what });
                }
                Ok(Self(s.to_owned()))
            }
        }
    };
}

id_type!(
    /// The plan's identifier for a member (`M100001`), shared with enrollment.
    MemberId,
    "member id"
);
id_type!(
    /// A benefit plan (`PLAN-PCM-OAP`); rules and networks are keyed by it.
    PlanId,
    "plan id"
);
id_type!(
    /// A nurse, physician reviewer or administrator (`RN-001`, `MD-ONC-01`), as
    /// recorded on every decision they make.
    StaffId,
    "staff id"
);

/// A clinical specialty slug (`medical_oncology`), used to match reviewers and
/// providers of the same or similar specialty.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Specialty(String);
string_code!(Specialty);

impl Specialty {
    /// Lowercases and turns spaces and hyphens into `_`, so "Medical Oncology" and
    /// "medical-oncology" both become `medical_oncology`.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty { what: "specialty" });
        }
        let slug: String = s
            .chars()
            .map(|c| match c {
                ' ' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        let ok = (2..=48).contains(&slug.len())
            && slug.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            && !slug.starts_with('_')
            && !slug.ends_with('_');
        if !ok {
            return Err(CodeError::SpecialtyShape);
        }
        Ok(Self(slug))
    }
}

/// An ISO 3166-1 alpha-2 country code (`US`, `GB`, `AE`), uppercase.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);
string_code!(CountryCode);

impl CountryCode {
    /// Accepts two ASCII letters in either case.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty { what: "country" });
        }
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(CodeError::CountryShape);
        }
        Ok(Self(s.to_ascii_uppercase()))
    }
}

/// A BCP 47 language tag restricted to a primary language and an optional region
/// (`en`, `es`, `ar`, `fr-CA`, `es-419`): enough to pick a letter template or match a
/// member with a nurse who speaks their language.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct LanguageTag(String);
string_code!(LanguageTag);

impl LanguageTag {
    /// Accepts `_` as well as `-`; canonical form has a lowercase language and an
    /// uppercase region.
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty { what: "language" });
        }
        let (primary, region) = match s.split_once(['-', '_']) {
            Some((p, r)) => (p, Some(r)),
            None => (s, None),
        };
        let primary_ok =
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
        let region_ok = match region {
            None => true,
            Some(r) => {
                (r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()))
                    || (r.len() == 3 && r.bytes().all(|b| b.is_ascii_digit()))
            }
        };
        if !primary_ok || !region_ok {
            return Err(CodeError::LanguageShape);
        }
        let mut tag = primary.to_ascii_lowercase();
        if let Some(r) = region {
            tag.push('-');
            tag.push_str(&r.to_ascii_uppercase());
        }
        Ok(Self(tag))
    }

    /// The language without its region (`es` for `es-419`), for matching a member's
    /// language against what a provider or nurse speaks.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_accepts_valid_check_digits() {
        for s in ["1234567893", "1245319599", "1679576722"] {
            assert_eq!(Npi::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn npi_rejects_with_a_reason() {
        let cases = [
            ("", "npi must not be empty"),
            ("123456789", "npi must be 10 digits"),
            ("12345678931", "npi must be 10 digits"),
            ("12345678a3", "npi must be 10 digits"),
            ("1234567890", "npi check digit does not match"),
            ("1245319590", "npi check digit does not match"),
        ];
        for (input, message) in cases {
            assert_eq!(
                Npi::parse(input).unwrap_err().to_string(),
                message,
                "{input}"
            );
        }
    }

    #[test]
    fn npi_detects_every_single_digit_typo() {
        let valid = "1245319599";
        for pos in 0..10 {
            for d in b'0'..=b'9' {
                let mut bytes = valid.as_bytes().to_vec();
                if bytes[pos] == d {
                    continue;
                }
                bytes[pos] = d;
                let typo = String::from_utf8(bytes).unwrap();
                assert!(Npi::parse(&typo).is_err(), "{typo}");
            }
        }
    }

    #[test]
    fn icd10_canonicalizes() {
        let cases = [
            ("C50.911", "C50.911"),
            ("c50911", "C50.911"),
            ("N18.6", "N18.6"),
            ("n186", "N18.6"),
            ("M17.0", "M17.0"),
            ("Z00.00", "Z00.00"),
            ("S72.001A", "S72.001A"),
            ("s72001a", "S72.001A"),
            ("E11.9", "E11.9"),
            ("C34.90", "C34.90"),
            ("C50", "C50"),
            (" u07.1 ", "U07.1"),
        ];
        for (input, canonical) in cases {
            assert_eq!(
                Icd10Code::parse(input).unwrap().as_str(),
                canonical,
                "{input}"
            );
        }
    }

    #[test]
    fn icd10_rejects_malformed() {
        for input in [
            "",
            "C5",
            "5C0.1",
            "CC0.1",
            "C50.",
            "C50.12345",
            "C5091122",
            "C50-911",
            "C50.9 1",
            "C.50",
            "C50..1",
            "É50.1",
        ] {
            assert!(Icd10Code::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn icd10_parts() {
        let code = Icd10Code::parse("C50.911").unwrap();
        assert_eq!(code.category(), "C50");
        assert_eq!(code.subcode(), Some("911"));
        assert_eq!(Icd10Code::parse("N18").unwrap().subcode(), None);
    }

    #[test]
    fn icd10_ranges_are_hierarchical() {
        let c = |s: &str| Icd10Code::parse(s).unwrap();
        let cases = [
            ("C50.911", "C50", "C50", true),
            ("C50", "C50", "C50", true),
            ("C50.911", "C00", "D49", true),
            ("D49.9", "C00", "D49", true),
            ("D50.0", "C00", "D49", false),
            ("B99.9", "C00", "D49", false),
            ("C50.911", "C50.9", "C50.9", true),
            ("C50.811", "C50.9", "C50.9", false),
            ("M17.0", "M17.0", "M17.9", true),
            ("M17.11", "M17.0", "M17.9", true),
            ("M16.9", "M17.0", "M17.9", false),
            ("C50.0", "C50.1", "C50.9", false),
        ];
        for (code, from, to, inside) in cases {
            assert_eq!(
                c(code).in_range(&c(from), &c(to)),
                inside,
                "{code} in {from}..{to}"
            );
        }
    }

    #[test]
    fn service_codes() {
        let cases = [
            ("70553", ServiceCodeKind::Cpt),
            ("0001f", ServiceCodeKind::Cpt),
            ("0042T", ServiceCodeKind::Cpt),
            ("j9355", ServiceCodeKind::Hcpcs),
            ("E0784", ServiceCodeKind::Hcpcs),
            ("G0299", ServiceCodeKind::Hcpcs),
        ];
        for (input, kind) in cases {
            let code = ServiceCode::parse(input).unwrap();
            assert_eq!(code.kind(), kind, "{input}");
            assert_eq!(code.as_str(), input.to_ascii_uppercase());
        }
        for input in [
            "", "7055", "705531", "W1234", "J935", "0001X", "A123F", "1234 ", "12 45",
        ] {
            assert!(ServiceCode::parse(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn service_code_ranges_keep_to_one_shape() {
        let c = |s: &str| ServiceCode::parse(s).unwrap();
        assert!(c("70553").in_range(&c("70010"), &c("79999")));
        assert!(!c("80053").in_range(&c("70010"), &c("79999")));
        assert!(!c("7001F").in_range(&c("70010"), &c("79999")));
        assert!(!c("70553").in_range(&c("0001F"), &c("9999F")));
        assert!(c("J9355").in_range(&c("J9000"), &c("J9999")));
        assert!(!c("J9355").in_range(&c("70010"), &c("79999")));
    }

    #[test]
    fn ids() {
        assert_eq!(MemberId::parse("M100001").unwrap().as_str(), "M100001");
        assert_eq!(
            PlanId::parse("PLAN-PCM-OAP").unwrap().as_str(),
            "PLAN-PCM-OAP"
        );
        assert_eq!(StaffId::parse("MD-ONC-01").unwrap().as_str(), "MD-ONC-01");
        assert_eq!(
            MemberId::parse("M1").unwrap_err().to_string(),
            "member id must be 3 to 32 letters, digits, '-' or '_'"
        );
        assert!(StaffId::parse("RN 001").is_err());
        assert!(PlanId::parse(&"P".repeat(33)).is_err());
        assert_eq!(
            PlanId::parse("").unwrap_err().to_string(),
            "plan id must not be empty"
        );
    }

    #[test]
    fn specialties_become_slugs() {
        assert_eq!(
            Specialty::parse("Medical Oncology").unwrap().as_str(),
            "medical_oncology"
        );
        assert_eq!(
            Specialty::parse("orthopaedic-surgery").unwrap().as_str(),
            "orthopaedic_surgery"
        );
        for input in ["x", "_x_", "oncology1", "ob/gyn", &"a".repeat(49)] {
            assert!(Specialty::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn countries_and_languages() {
        assert_eq!(CountryCode::parse("gb").unwrap().as_str(), "GB");
        assert!(CountryCode::parse("GBR").is_err());
        assert!(CountryCode::parse("1A").is_err());
        assert_eq!(LanguageTag::parse("EN").unwrap().as_str(), "en");
        assert_eq!(LanguageTag::parse("es_419").unwrap().as_str(), "es-419");
        assert_eq!(LanguageTag::parse("fr-ca").unwrap().as_str(), "fr-CA");
        assert_eq!(LanguageTag::parse("es-419").unwrap().primary(), "es");
        for input in ["e", "engl", "en-", "en-USA", "en-12", "e1"] {
            assert!(LanguageTag::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn serde_validates_and_canonicalizes() {
        let code: Icd10Code = serde_json::from_str("\"c50911\"").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"C50.911\"");
        let err = serde_json::from_str::<Npi>("\"1234567890\"").unwrap_err();
        assert!(
            err.to_string().contains("npi check digit does not match"),
            "{err}"
        );
    }

    #[test]
    fn from_str_matches_parse() {
        let npi: Npi = "1234567893".parse().unwrap();
        assert_eq!(npi, Npi::parse("1234567893").unwrap());
        assert_eq!(npi.to_string(), "1234567893");
    }
}
