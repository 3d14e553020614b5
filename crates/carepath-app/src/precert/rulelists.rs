//! The precertification lists in force: listing them, and validating and activating
//! a new version without a restart.

use carepath_core::{DomainEvent, Invalid, Role};
use carepath_precert::{LoadErrors, RuleList};
use carepath_store::RuleListRecord;
use chrono::NaiveDate;

use super::{ListOrigin, Precert};
use crate::{AppError, AppResult, Caller, Page, PageRequest, page_in_memory};

/// The name a list's source is read under when the caller gives none.
const DEFAULT_SOURCE_NAME: &str = "rule-list.toml";

/// One version of a list, as the rule book holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleListVersion {
    /// The list's id.
    pub list_id: String,
    /// The version.
    pub version: String,
    /// The first day it applies.
    pub effective_from: NaiveDate,
    /// The last day it applies, if it ends.
    pub effective_to: Option<NaiveDate>,
    /// How many rules it has.
    pub rules: u32,
    /// `shipped`, or the subject of the admin who activated it.
    pub source: String,
    /// Whether it applies today.
    pub in_force: bool,
}

impl RuleListVersion {
    fn of(list: &RuleList, origin: &ListOrigin, today: NaiveDate) -> Self {
        RuleListVersion {
            list_id: list.id.clone(),
            version: list.version.clone(),
            effective_from: list.effective_from,
            effective_to: list.effective_to,
            rules: list.rules.len() as u32,
            source: match origin {
                ListOrigin::Shipped => "shipped".into(),
                ListOrigin::Activated { by } => by.clone(),
            },
            in_force: list.in_force_on(today),
        }
    }
}

/// The outcome of validating a list: the version it would be, or every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The version the list would be once activated.
    Valid(RuleListVersion),
    /// Every problem found.
    Invalid(Vec<String>),
}

/// Every load problem of a list, under the field `source`.
fn load_invalid(errors: &LoadErrors) -> AppError {
    let mut invalid = Invalid::new();
    for e in &errors.0 {
        invalid.push("source", e.to_string());
    }
    AppError::Invalid(invalid)
}

fn source_name(name: &str) -> &str {
    match name.trim() {
        "" => DEFAULT_SOURCE_NAME,
        name => name,
    }
}

impl Precert {
    /// A page of the lists in the rule book, ordered by id and version. Any
    /// authenticated caller may read them.
    pub async fn list_rule_lists(
        &self,
        _caller: &Caller,
        page: PageRequest,
    ) -> AppResult<Page<RuleListVersion>> {
        let size = page.checked_size("page.page_size")?;
        let today = self.app.now().date_naive();
        let rules = self.engine.rules();
        let (lists, next_page_token) = page_in_memory(
            rules.lists().iter().collect(),
            |l| format!("{}/{}", l.id, l.version),
            &page.token,
            size,
        );
        Ok(Page {
            items: lists
                .into_iter()
                .map(|l| RuleListVersion::of(l, &self.engine.origin(&l.id, &l.version), today))
                .collect(),
            next_page_token,
        })
    }

    /// Whether `source` (TOML, read as `source_name`) is a list that could be
    /// activated alongside those in force; for admins.
    pub async fn validate_rule_list(
        &self,
        caller: &Caller,
        source_name: &str,
        source: &str,
    ) -> AppResult<Validation> {
        caller.require_role(&[Role::Admin], "rule-list administration")?;
        let name = self::source_name(source_name);
        let today = self.app.now().date_naive();
        let result = RuleList::from_toml(name, source)
            .and_then(|list| self.engine.with_list(list.clone()).map(|_| list));
        Ok(match result {
            Ok(list) => Validation::Valid(RuleListVersion::of(
                &list,
                &ListOrigin::Activated {
                    by: caller.actor.subject.clone(),
                },
                today,
            )),
            Err(errors) => Validation::Invalid(errors.0.iter().map(ToString::to_string).collect()),
        })
    }

    /// Stores `source` as a new list version and puts it in force at once, in this
    /// process (others pick it up at their next refresh); for admins.
    pub async fn activate_rule_list(
        &self,
        caller: &Caller,
        source_name: &str,
        source: String,
    ) -> AppResult<RuleListVersion> {
        caller.require_role(&[Role::Admin], "rule-list administration")?;
        let name = self::source_name(source_name);
        let list = RuleList::from_toml(name, &source).map_err(|e| load_invalid(&e))?;
        let _updating = self.engine.updating().await;
        let book = self
            .engine
            .with_list(list.clone())
            .map_err(|e| load_invalid(&e))?;
        let now = self.app.now();
        let record = RuleListRecord {
            list_id: list.id.clone(),
            version: list.version.clone(),
            effective_from: list.effective_from,
            source_name: name.to_owned(),
            source,
            activated_by: caller.actor.subject.clone(),
            activated_at: now,
        };
        let mut tx = self.app.store.begin().await?;
        tx.insert_rule_list(&record).await?;
        tx.append_event(&DomainEvent {
            id: uuid::Uuid::now_v7().to_string(),
            kind: "precert.rule_list.activated".into(),
            aggregate_kind: "precert_rule_list".into(),
            aggregate_id: format!("{}@{}", list.id, list.version),
            member_id: None,
            occurred_at: now,
            payload: serde_json::json!({
                "list_id": list.id,
                "version": list.version,
                "effective_from": list.effective_from,
                "activated_by": caller.actor.subject,
            }),
        })
        .await?;
        tx.commit().await?;
        let origin = ListOrigin::Activated {
            by: record.activated_by.clone(),
        };
        let today = now.date_naive();
        let version = book
            .lists()
            .iter()
            .find(|l| l.id == list.id && l.version == list.version)
            .map_or_else(
                || RuleListVersion::of(&list, &origin, today),
                |l| RuleListVersion::of(l, &origin, today),
            );
        self.engine.install(book, &record);
        Ok(version)
    }
}
