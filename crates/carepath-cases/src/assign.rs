//! Choosing a nurse case manager: by specialty, the member's language and current
//! caseload, never above the per-nurse cap.

use carepath_core::LanguageTag;

use crate::case::NurseRef;
use crate::model::CaseKind;

/// Open cases one nurse may hold at most. Published care-manager caseloads run from
/// about 50 to 99 members a month; 60 leaves room for intensive cases.
pub const DEFAULT_CASELOAD_CAP: u32 = 60;

/// A nurse who could take a case, with what matters for choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NurseCandidate {
    pub nurse: NurseRef,
    pub specialty: Option<String>,
    pub languages: Vec<LanguageTag>,
    /// Open cases assigned now.
    pub caseload: u32,
}

impl NurseCandidate {
    /// 2 for the case kind's own specialty, 1 for a general nurse, 0 otherwise.
    fn specialty_fit(&self, kind: CaseKind) -> u8 {
        match self.specialty.as_deref() {
            Some(s) if s == kind.nurse_specialty() => 2,
            Some("general") => 1,
            _ => 0,
        }
    }

    fn speaks(&self, language: &LanguageTag) -> bool {
        self.languages
            .iter()
            .any(|l| l.primary() == language.primary())
    }
}

/// Whether a nurse with `caseload` open cases may take one more.
pub fn has_capacity(caseload: u32, cap: u32) -> bool {
    caseload < cap
}

/// The best nurse for a case of `kind` for a member speaking `language`: the best
/// specialty fit, then one who speaks the member's language, then the lightest
/// caseload, then the staff id (so the choice is stable). Nurses at the cap are
/// skipped; `None` when every nurse is full.
pub fn choose_nurse<'a>(
    kind: CaseKind,
    language: Option<&LanguageTag>,
    candidates: &'a [NurseCandidate],
    cap: u32,
) -> Option<&'a NurseCandidate> {
    candidates
        .iter()
        .filter(|c| has_capacity(c.caseload, cap))
        .min_by(|a, b| {
            let key = |c: &NurseCandidate| {
                (
                    std::cmp::Reverse(c.specialty_fit(kind)),
                    std::cmp::Reverse(language.is_some_and(|l| c.speaks(l))),
                    c.caseload,
                )
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.nurse.staff_id.cmp(&b.nurse.staff_id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carepath_core::StaffId;

    fn nurse(id: &str, specialty: &str, languages: &[&str], caseload: u32) -> NurseCandidate {
        NurseCandidate {
            nurse: NurseRef {
                staff_id: StaffId::parse(id).unwrap(),
                name: id.into(),
            },
            specialty: Some(specialty.into()),
            languages: languages
                .iter()
                .map(|l| LanguageTag::parse(l).unwrap())
                .collect(),
            caseload,
        }
    }

    fn demo(load: [u32; 5]) -> Vec<NurseCandidate> {
        vec![
            nurse("RN-001", "oncology", &["en", "es"], load[0]),
            nurse("RN-002", "maternity", &["en", "fr"], load[1]),
            nurse("RN-003", "transitions", &["en", "ar"], load[2]),
            nurse("RN-004", "general", &["en"], load[3]),
            nurse("RN-005", "oncology", &["en", "fr"], load[4]),
        ]
    }

    fn pick(kind: CaseKind, lang: &str, load: [u32; 5], cap: u32) -> Option<String> {
        let all = demo(load);
        let l = LanguageTag::parse(lang).unwrap();
        choose_nurse(kind, Some(&l), &all, cap).map(|c| c.nurse.staff_id.to_string())
    }

    #[test]
    fn specialty_then_language_then_caseload() {
        let cases = [
            // oncology, english: both oncology nurses speak it; lighter caseload wins
            (
                CaseKind::Oncology,
                "en",
                [5, 0, 0, 0, 3],
                60,
                Some("RN-005"),
            ),
            // french speaker: RN-005 even with more cases
            (
                CaseKind::Oncology,
                "fr",
                [1, 0, 0, 0, 9],
                60,
                Some("RN-005"),
            ),
            // spanish speaker: RN-001
            (
                CaseKind::Oncology,
                "es",
                [9, 0, 0, 0, 1],
                60,
                Some("RN-001"),
            ),
            // tie on everything: the lower staff id
            (
                CaseKind::Oncology,
                "en",
                [2, 0, 0, 0, 2],
                60,
                Some("RN-001"),
            ),
            // both oncology nurses full: a general nurse
            (
                CaseKind::Oncology,
                "en",
                [60, 0, 0, 0, 60],
                60,
                Some("RN-004"),
            ),
            (
                CaseKind::Transitions,
                "ar",
                [0, 0, 10, 0, 0],
                60,
                Some("RN-003"),
            ),
            (
                CaseKind::DecisionSupport,
                "ar",
                [0, 0, 0, 0, 0],
                60,
                Some("RN-004"),
            ),
            (CaseKind::General, "en", [1, 1, 1, 1, 1], 1, None),
        ];
        for (kind, lang, load, cap, expect) in cases {
            assert_eq!(
                pick(kind, lang, load, cap).as_deref(),
                expect,
                "{kind} {lang} {load:?} cap {cap}"
            );
        }
    }

    #[test]
    fn the_cap_is_exclusive() {
        assert!(has_capacity(59, 60));
        assert!(!has_capacity(60, 60));
    }
}
