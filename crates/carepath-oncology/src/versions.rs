//! Catalogue versions over time: each version applies from its effective date, and a
//! review uses the version in effect on the date the caller names (the date of service
//! or of the request), so a plan submitted before a pathway change is judged by the
//! rules of its day.

use chrono::NaiveDate;

use crate::catalogue::Catalogue;
use crate::load::{CatalogueError, Problem};

/// Every loaded catalogue version, ordered by effective date, periods not overlapping.
#[derive(Debug, Clone)]
pub struct CatalogueSet {
    versions: Vec<Catalogue>,
}

impl CatalogueSet {
    /// Orders the versions and checks that no two share a label or apply on the same
    /// day. A version without an end date runs until the next one starts.
    pub fn new(mut versions: Vec<Catalogue>) -> Result<Self, CatalogueError> {
        versions.sort_by_key(|v| v.effective_from);
        let mut problems = Vec::new();
        for (i, v) in versions.iter().enumerate() {
            if versions[..i].iter().any(|w| w.version == v.version) {
                problems.push(Problem {
                    source_name: format!("catalogue {}", v.version),
                    entry: None,
                    message: "version is loaded twice".into(),
                });
            }
            if let Some(next) = versions.get(i + 1) {
                let overlaps = next.effective_from == v.effective_from
                    || v.effective_until
                        .is_some_and(|until| until >= next.effective_from);
                if overlaps {
                    problems.push(Problem {
                        source_name: format!("catalogue {}", v.version),
                        entry: None,
                        message: format!(
                            "its effective period overlaps version {} from {}",
                            next.version, next.effective_from
                        ),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { versions })
        } else {
            Err(CatalogueError { problems })
        }
    }

    /// The shipped catalogue as the only version.
    pub fn shipped() -> Self {
        Self {
            versions: vec![Catalogue::shipped()],
        }
    }

    /// The version in effect on `date`: the latest one started on or before it, unless
    /// that one has ended.
    pub fn in_effect_on(&self, date: NaiveDate) -> Option<&Catalogue> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.effective_from <= date)
            .filter(|v| v.is_effective_on(date))
    }

    /// A version by its label, to re-run an evaluation recorded against it.
    pub fn version(&self, label: &str) -> Option<&Catalogue> {
        self.versions.iter().find(|v| v.version == label)
    }

    /// Every version, oldest first.
    pub fn versions(&self) -> &[Catalogue] {
        &self.versions
    }
}
