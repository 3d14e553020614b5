//! Who may ask for a second opinion: a qualifying diagnosis (or major surgery
//! recommended for one), a non-emergency situation, and a first opinion already given.

use carepath_core::Icd10Code;

use crate::catalogue::{Basis, Catalogue, DiagnosisGroup};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    #[error(
        "a second opinion is for non-emergency situations only; in an emergency, seek care at once"
    )]
    Emergency,
    #[error("a second opinion needs a first opinion: say who gave it, when, and what it said")]
    NoFirstOpinion,
    #[error(
        "diagnosis {0} is not in a group that qualifies for a second opinion (life-threatening or life-altering diagnoses, serious or rare conditions, or major surgery recommended)"
    )]
    NotQualifying(Icd10Code),
    #[error(
        "{condition} ({diagnosis}) qualifies for a second opinion only when major surgery has been recommended"
    )]
    NoMajorSurgery {
        condition: String,
        diagnosis: Icd10Code,
    },
}

impl Ineligible {
    /// A stable code for clients and reports.
    pub fn code(&self) -> &'static str {
        match self {
            Ineligible::Emergency => "emergency",
            Ineligible::NoFirstOpinion => "no_first_opinion",
            Ineligible::NotQualifying(_) => "diagnosis_not_qualifying",
            Ineligible::NoMajorSurgery { .. } => "major_surgery_not_recommended",
        }
    }
}

/// What eligibility is decided on.
#[derive(Debug, Clone, Copy)]
pub struct EligibilityInput<'a> {
    pub diagnosis: &'a Icd10Code,
    pub major_surgery_recommended: bool,
    pub emergency: bool,
    pub has_first_opinion: bool,
}

/// Decides eligibility; on success, the group the diagnosis qualifies under.
pub fn check_eligibility<'c>(
    catalogue: &'c Catalogue,
    input: EligibilityInput<'_>,
) -> Result<&'c DiagnosisGroup, Ineligible> {
    if input.emergency {
        return Err(Ineligible::Emergency);
    }
    let group = catalogue
        .group_of(input.diagnosis)
        .ok_or_else(|| Ineligible::NotQualifying(input.diagnosis.clone()))?;
    if group.basis == Basis::MajorSurgery && !input.major_surgery_recommended {
        return Err(Ineligible::NoMajorSurgery {
            condition: group.name.clone(),
            diagnosis: input.diagnosis.clone(),
        });
    }
    if !input.has_first_opinion {
        return Err(Ineligible::NoFirstOpinion);
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility_table() {
        let c = crate::shipped();
        let code = |s: &str| Icd10Code::parse(s).unwrap();
        let cases = [
            ("N18.6", false, false, true, Ok("chronic_kidney_disease")),
            ("C50.911", false, false, true, Ok("cancer")),
            ("M17.0", true, false, true, Ok("knee_osteoarthritis")),
            (
                "M17.0",
                false,
                false,
                true,
                Err("major_surgery_not_recommended"),
            ),
            ("J06.9", true, false, true, Err("diagnosis_not_qualifying")),
            ("N18.6", false, true, true, Err("emergency")),
            ("N18.6", false, false, false, Err("no_first_opinion")),
        ];
        for (dx, surgery, emergency, first, expected) in cases {
            let d = code(dx);
            let got = check_eligibility(
                &c,
                EligibilityInput {
                    diagnosis: &d,
                    major_surgery_recommended: surgery,
                    emergency,
                    has_first_opinion: first,
                },
            )
            .map(|g| g.id.as_str())
            .map_err(|e| e.code());
            assert_eq!(
                got, expected,
                "{dx} surgery={surgery} emergency={emergency}"
            );
        }
    }
}
