//! Choosing the lead physician: an expert of a fitting specialty with capacity and no
//! conflict, preferring one who speaks the member's language.

use std::collections::HashMap;

use carepath_core::{CountryCode, LanguageTag, Npi, Provider, ProviderKind};

use crate::catalogue::DiagnosisGroup;

/// The first opinion's physician, as far as it is known.
#[derive(Debug, Clone, Copy)]
pub struct Conflicts<'a> {
    pub first_opinion_npi: Option<&'a Npi>,
    /// The first-opinion physician's practice, from the directory or as given.
    pub first_opinion_practice: Option<&'a str>,
}

/// Who the expert is for.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub group: &'a DiagnosisGroup,
    pub language: &'a LanguageTag,
    pub country: &'a CountryCode,
    pub conflicts: Conflicts<'a>,
    /// Open requests each expert leads now.
    pub open_requests: &'a HashMap<Npi, u32>,
    pub capacity: u32,
}

/// Why no expert could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no expert in {specialties} is free of conflict and has capacity")]
pub struct NoExpert {
    pub specialties: String,
}

fn same_practice(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Picks the lead physician among `candidates` (the directory's providers).
///
/// Experts are physicians with a biography whose specialty is one of the group's.
/// Excluded: the first-opinion physician, anyone of the same practice, and experts at
/// capacity. Among the rest: those who speak the member's language first; then those
/// practising outside the member's country (the opinion is meant to be independent
/// of the local referral network that produced the first one); then the least loaded;
/// then the lowest NPI, so the choice is reproducible.
pub fn choose_expert<'p>(
    candidates: &'p [Provider],
    input: MatchInput<'_>,
) -> Result<&'p Provider, NoExpert> {
    candidates
        .iter()
        .filter(|p| p.kind == ProviderKind::Physician)
        .filter(|p| p.biography.as_deref().is_some_and(|b| !b.trim().is_empty()))
        .filter(|p| {
            p.specialty
                .as_ref()
                .is_some_and(|s| input.group.specialties.contains(s))
        })
        .filter(|p| Some(&p.npi) != input.conflicts.first_opinion_npi)
        .filter(|p| {
            match (
                p.practice.as_deref(),
                input.conflicts.first_opinion_practice,
            ) {
                (Some(a), Some(b)) => !same_practice(a, b),
                _ => true,
            }
        })
        .filter(|p| input.open_requests.get(&p.npi).copied().unwrap_or(0) < input.capacity)
        .min_by_key(|p| {
            (
                !p.speaks(input.language),
                &p.address.country == input.country,
                input.open_requests.get(&p.npi).copied().unwrap_or(0),
                p.npi.clone(),
            )
        })
        .ok_or_else(|| NoExpert {
            specialties: input
                .group
                .specialties
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carepath_core::DirectoryBundle;

    fn npi(s: &str) -> Npi {
        Npi::parse(s).unwrap()
    }

    fn pick(
        group: &str,
        language: &str,
        country: &str,
        first: Option<&str>,
        practice: Option<&str>,
        open: &[(&str, u32)],
    ) -> Result<String, NoExpert> {
        let bundle = DirectoryBundle::demo().unwrap();
        let c = crate::shipped();
        let first = first.map(npi);
        let open: HashMap<Npi, u32> = open.iter().map(|(n, k)| (npi(n), *k)).collect();
        choose_expert(
            &bundle.providers,
            MatchInput {
                group: c.group(group).unwrap(),
                language: &LanguageTag::parse(language).unwrap(),
                country: &CountryCode::parse(country).unwrap(),
                conflicts: Conflicts {
                    first_opinion_npi: first.as_ref(),
                    first_opinion_practice: practice,
                },
                open_requests: &open,
                capacity: 2,
            },
        )
        .map(|p| p.npi.to_string())
    }

    #[test]
    fn the_stories_get_their_experts() {
        // The UK member's own nephrologist gave the first opinion: the other one leads.
        assert_eq!(
            pick(
                "chronic_kidney_disease",
                "en",
                "GB",
                Some("1230457628"),
                Some("Caledonian Renal Practice"),
                &[]
            )
            .unwrap(),
            "1899844926"
        );
        // An Arabic speaker in Dubai: an Arabic-speaking expert outside the UAE.
        assert_eq!(
            pick(
                "knee_osteoarthritis",
                "ar",
                "AE",
                None,
                Some("Dubai Bone and Joint Centre"),
                &[]
            )
            .unwrap(),
            "1740286731"
        );
    }

    #[test]
    fn conflicts_and_capacity_exclude() {
        // Same practice as the first-opinion physician.
        assert_eq!(
            pick(
                "knee_osteoarthritis",
                "ar",
                "AE",
                None,
                Some("lakeshore knee preservation center"),
                &[]
            )
            .unwrap(),
            "1495212221"
        );
        // At capacity.
        assert_eq!(
            pick(
                "knee_osteoarthritis",
                "ar",
                "AE",
                None,
                None,
                &[("1740286731", 2)]
            )
            .unwrap(),
            "1495212221"
        );
        // Nobody left.
        let err = pick(
            "chronic_kidney_disease",
            "en",
            "GB",
            Some("1230457628"),
            None,
            &[("1899844926", 2)],
        )
        .unwrap_err();
        assert_eq!(err.specialties, "nephrology");
    }
}
