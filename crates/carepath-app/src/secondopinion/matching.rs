//! Who leads the review: the expert chosen when the records complete, inside the
//! command's transaction.

use std::collections::HashMap;

use carepath_core::{Actor, EventDraft, Npi, Provider, Role};
use carepath_secondopinion::{Conflicts, Expert, MatchInput, SecondOpinionRequest, choose_expert};
use carepath_store::{ProviderFilter, StoreError, Tx};
use chrono::{DateTime, Utc};

use super::{MATCHING_SUBJECT, SecondOpinion};
use crate::error::{AppError, AppResult};

impl SecondOpinion {
    /// Chooses and assigns the lead physician, inside the command's transaction. When
    /// nobody is free the request waits in `awaiting_assignment`.
    pub(super) async fn assign(
        &self,
        tx: &mut Tx,
        request: &mut SecondOpinionRequest,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<EventDraft>> {
        let Some(group) = self.catalogue.group(&request.diagnosis_group) else {
            return Err(AppError::Internal(format!(
                "request {} names unknown group {}",
                request.id, request.diagnosis_group
            )));
        };
        let mut candidates: Vec<Provider> = Vec::new();
        for specialty in &group.specialties {
            let filter = ProviderFilter {
                specialty: Some(specialty.to_string()),
                kind: Some("physician".into()),
                ..Default::default()
            };
            let mut after = String::new();
            loop {
                let page = self.app.store.list_providers(&filter, &after, 500).await?;
                candidates.extend(page.items);
                match page.next_page_token {
                    Some(t) => after = t,
                    None => break,
                }
            }
        }
        let load: HashMap<Npi, u32> = tx
            .expert_load()
            .await?
            .into_iter()
            .filter_map(|(npi, n)| Some((Npi::parse(&npi).ok()?, u32::try_from(n).ok()?)))
            .collect();
        let first_practice = match (
            &request.first_opinion.practice,
            &request.first_opinion.physician_npi,
        ) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(npi)) => self.provider(npi).await?.and_then(|p| p.practice),
            (None, None) => None,
        };
        let chosen = choose_expert(
            &candidates,
            MatchInput {
                group,
                language: &request.member_language,
                country: &request.member_country,
                conflicts: Conflicts {
                    first_opinion_npi: request.first_opinion.physician_npi.as_ref(),
                    first_opinion_practice: first_practice.as_deref(),
                },
                open_requests: &load,
                capacity: self.catalogue.expert_capacity,
            },
        );
        let expert = match chosen {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(request = %request.id, reason = %e, "no expert free; the request waits");
                return Ok(Vec::new());
            }
        };
        let system = Actor::new(Role::Service, MATCHING_SUBJECT).expect("valid service name");
        Ok(request.assign(
            &system,
            Expert {
                npi: expert.npi.clone(),
                name: expert.name.clone(),
                specialty: expert.specialty.clone().expect("experts have a specialty"),
                practice: expert.practice.clone(),
                assigned_at: now,
            },
            now,
        )?)
    }

    /// The directory entry of `npi`, if there is one.
    pub(super) async fn provider(&self, npi: &Npi) -> AppResult<Option<Provider>> {
        match self.app.store.get_provider(npi).await {
            Ok(p) => Ok(Some(p)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
