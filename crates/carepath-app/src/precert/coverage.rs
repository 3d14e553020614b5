//! Coverage requirements at ordering time: what the plan tells an ordering provider
//! about each order (does it need precertification, who asks, what to send, what to
//! answer, is it already satisfied by a gold card), kept as a numbered assertion a
//! later request can cite; and the forms (questions and documents) a requester fills
//! in.
//!
//! The answer is the requirement check of [`Precert::check`] plus the ordering
//! practitioner's gold-card exemptions: the rule engine in memory and one directory
//! read per rendering provider, then one write holding the assertions and their
//! audit entries.

use carepath_core::{Actor, Icd10Code, MemberId, NetworkStatus, Npi, Role};
use carepath_precert::{CheckAnswer, Form, MAX_LINES, Requirement, ServiceLine};
use carepath_store::{AuditOutcome, CoverageAssertionRecord, StoreError, SubmissionParties};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::Precert;
use super::submit::{Parties, may_request};
use crate::{AppError, AppResult, Caller};

/// The audit log's record kind of a coverage assertion.
pub const ASSERTION_RECORD_KIND: &str = "coverage_assertion";
/// The audit log's record kind of a form (a questionnaire) handed out.
pub const FORM_RECORD_KIND: &str = "questionnaire";
/// Most forms one request for forms names.
pub const MAX_FORMS: usize = 20;
/// Longest coverage assertion id or rule id accepted.
pub const MAX_ID_LEN: usize = 64;

/// One order to check: the service as ordered and who would render it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCheck {
    /// The service ordered.
    pub line: ServiceLine,
    /// The provider who would render it; the ordering practitioner when not named.
    pub rendering_npi: Option<Npi>,
}

/// The orders of one member a practitioner is about to sign, book or select.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageRequest {
    /// The member the orders are for.
    pub member_id: MemberId,
    /// The practitioner ordering: gold-card exemptions are theirs.
    pub ordering_npi: Npi,
    /// The member's diagnoses the orders are for.
    pub diagnoses: Vec<Icd10Code>,
    /// The orders, one assertion each, in order.
    pub orders: Vec<OrderCheck>,
}

/// What the plan told an ordering provider about one order, under a stable id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageAssertion {
    /// `CA-…`: cited by a later precertification request to link the two.
    pub id: String,
    /// The day the assertion was made.
    pub asserted_on: NaiveDate,
    /// The member.
    pub member_id: MemberId,
    /// The ordering practitioner.
    pub ordering_npi: Npi,
    /// The provider who would render the service.
    pub rendering_npi: Npi,
    /// The rendering provider's network status for the member's plan.
    pub network: NetworkStatus,
    /// The order as checked.
    pub line: ServiceLine,
    /// The requirement check's answer (rule, list version, who asks, documents and
    /// questions).
    pub answer: CheckAnswer,
    /// The ordering practitioner's gold-card exemption that satisfies the
    /// requirement without review, if one does.
    pub gold_card: Option<String>,
}

/// Whether precertification is needed for an asserted order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorAuth {
    /// The plan does not pay for the service (out of network, not covered).
    NotCovered,
    /// Nothing to ask for.
    NotNeeded,
    /// Not asked in advance; the plan is told after the fact (emergency admissions).
    NotifyAfter,
    /// Needed; the ordering or rendering provider asks.
    Needed,
    /// Needed; out of network, so the member asks.
    NeededByMember,
    /// Needed, and decided by a program's review of the whole plan of care.
    NeededByProgram,
    /// Needed, and satisfied by the ordering practitioner's gold-card exemption: a
    /// request is approved without review.
    SatisfiedByGoldCard,
}

impl CoverageAssertion {
    /// Whether precertification is needed, and how.
    pub fn prior_auth(&self) -> PriorAuth {
        match self.answer.requirement {
            Requirement::NotCovered => PriorAuth::NotCovered,
            Requirement::NotRequired => PriorAuth::NotNeeded,
            Requirement::NotifyOnly => PriorAuth::NotifyAfter,
            Requirement::Required if self.gold_card.is_some() => PriorAuth::SatisfiedByGoldCard,
            Requirement::Required if self.answer.program.is_some() => PriorAuth::NeededByProgram,
            Requirement::Required
                if self.answer.responsible == carepath_precert::Responsible::Member =>
            {
                PriorAuth::NeededByMember
            }
            Requirement::Required => PriorAuth::Needed,
        }
    }

    /// The form to fill in with the request, when one is needed: not when a gold
    /// card satisfies the requirement.
    pub fn form(&self) -> Option<Form> {
        if self.gold_card.is_some() {
            return None;
        }
        Form::of_answer(&self.answer)
    }
}

/// Forms asked for: by the coverage assertions they follow, or by rule (and list
/// version, the newest when not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormRequest {
    /// Coverage assertion ids (from the orders' coverage information).
    pub assertions: Vec<String>,
    /// `(rule id, list version)` pairs.
    pub rules: Vec<(String, Option<String>)>,
}

/// A form handed out, with the assertion it was asked for through, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct FormFor {
    /// The form.
    pub form: Form,
    /// The assertion that called for it.
    pub assertion: Option<CoverageAssertion>,
}

/// Whether `actor` may read `assertion`: who asked for it, the ordering
/// practitioner, the member, and plan staff and internal services.
fn may_read(actor: &Actor, record: &CoverageAssertionRecord) -> bool {
    match actor.role {
        Role::Provider => actor.subject == record.subject || actor.subject == record.ordering_npi,
        Role::Member => actor.subject == record.member_id,
        _ => actor.is_staff() || actor.role == Role::Service,
    }
}

impl Precert {
    /// Asserts what precertification each order needs, stores the assertions and
    /// audits each as an access to the member's coverage, in one transaction. A call
    /// refused for its content (an unknown member or provider) is audited too, as a
    /// refused access to the member named.
    pub async fn assert_coverage(
        &self,
        caller: &Caller,
        req: CoverageRequest,
    ) -> AppResult<Vec<CoverageAssertion>> {
        let member = req.member_id.clone();
        match self.try_assert_coverage(caller, req).await {
            Err(err @ (AppError::Invalid(_) | AppError::PermissionDenied(_))) => Err(self
                .app
                .refuse(
                    caller,
                    ASSERTION_RECORD_KIND,
                    member.as_str(),
                    Some(&member),
                    err,
                )
                .await),
            result => result,
        }
    }

    async fn try_assert_coverage(
        &self,
        caller: &Caller,
        req: CoverageRequest,
    ) -> AppResult<Vec<CoverageAssertion>> {
        let CoverageRequest {
            member_id,
            ordering_npi,
            diagnoses,
            orders,
        } = req;
        if orders.is_empty() {
            return Err(AppError::field("orders", "at least one order"));
        }
        if orders.len() > MAX_LINES {
            return Err(AppError::field(
                "orders",
                format!("at most {MAX_LINES} orders"),
            ));
        }
        may_request(&caller.actor, &member_id, None)?;
        self.check_service_dates(
            orders.iter().map(|o| &o.line),
            carepath_precert::Purpose::Check,
            "orders",
        )?;
        let rules = self.engine.rules();
        let gold = self.engine.gold_cards();
        let now = self.app.stored_now();
        let today = now.date_naive();
        // One directory read per distinct rendering provider (usually one).
        let mut parties: Vec<(Npi, SubmissionParties)> = Vec::new();
        let mut assertions = Vec::with_capacity(orders.len());
        for (i, order) in orders.into_iter().enumerate() {
            let rendering = order.rendering_npi.unwrap_or_else(|| ordering_npi.clone());
            let found = match parties.iter().find(|(npi, _)| npi == &rendering) {
                Some((_, found)) => found.clone(),
                None => {
                    let found = self
                        .parties("", &member_id, &ordering_npi, &rendering)
                        .await?;
                    parties.push((rendering.clone(), found.clone()));
                    found
                }
            };
            let rendering_field = format!("orders[{i}].rendering_npi");
            let Parties {
                plan,
                servicing_network: network,
                ..
            } = Parties::of(found, &member_id, "ordering_npi", Some(&rendering_field))?;
            let check = rules
                .check(&plan, network, &order.line, &diagnoses)
                .map_err(|e| AppError::FailedPrecondition(e.to_string()))?;
            let gold_card = check
                .gold_card_exemption(&gold, &ordering_npi)
                .map(|e| e.id.clone());
            assertions.push(CoverageAssertion {
                id: format!("CA-{}", uuid::Uuid::now_v7().simple()),
                asserted_on: today,
                member_id: member_id.clone(),
                ordering_npi: ordering_npi.clone(),
                rendering_npi: rendering,
                network,
                line: order.line,
                answer: check.to_answer(),
                gold_card,
            });
        }
        let mut tx = self.app.store.begin().await?;
        for a in &assertions {
            let doc = serde_json::to_value(a)
                .map_err(|e| AppError::Internal(format!("coverage assertion: {e}")))?;
            tx.insert_coverage_assertion(&CoverageAssertionRecord {
                id: a.id.clone(),
                member_id: member_id.as_str().to_owned(),
                ordering_npi: ordering_npi.as_str().to_owned(),
                subject: caller.actor.subject.clone(),
                operation: caller.operation.clone(),
                created_at: now,
                doc,
            })
            .await?;
            tx.append_audit(
                &caller.audit_entry(
                    ASSERTION_RECORD_KIND,
                    &a.id,
                    Some(&member_id),
                    AuditOutcome::Allowed,
                ),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(assertions)
    }

    /// The coverage assertion `id`, to a caller who may read it (anyone else is told
    /// it does not exist, and the refusal is audited). `field` names where the id came
    /// from. Reading it is audited.
    pub async fn coverage_assertion(
        &self,
        caller: &Caller,
        id: &str,
        field: &str,
    ) -> AppResult<CoverageAssertion> {
        let assertion = self.find_assertion(caller, id, field).await?;
        self.app
            .audit(
                caller,
                ASSERTION_RECORD_KIND,
                &assertion.id,
                Some(&assertion.member_id),
                AuditOutcome::Allowed,
            )
            .await?;
        Ok(assertion)
    }

    /// The assertion `id` if `caller` may read it; refusals are audited.
    pub(super) async fn find_assertion(
        &self,
        caller: &Caller,
        id: &str,
        field: &str,
    ) -> AppResult<CoverageAssertion> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(AppError::field(
                field,
                format!("a coverage assertion id is 1 to {MAX_ID_LEN} characters"),
            ));
        }
        let record = match self.app.store.coverage_assertion(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Err(AppError::field(field, "no coverage assertion with this id"));
            }
            Err(e) => return Err(e.into()),
        };
        if !may_read(&caller.actor, &record) {
            let member = MemberId::parse(&record.member_id).ok();
            let err = AppError::field(field, "no coverage assertion with this id");
            return Err(self
                .app
                .refuse(caller, ASSERTION_RECORD_KIND, id, member.as_ref(), err)
                .await);
        }
        serde_json::from_value(record.doc)
            .map_err(|e| AppError::Internal(format!("coverage assertion {id}: {e}")))
    }

    /// The forms asked for, each (list version, rule) once, in the order asked: an
    /// assertion's form is the one it called for (none when nothing is to be filled
    /// in); a rule's is the rule's on the version named, or on the newest version that
    /// has the rule. Each form handed out is audited.
    pub async fn forms(&self, caller: &Caller, req: FormRequest) -> AppResult<Vec<FormFor>> {
        if req.assertions.is_empty() && req.rules.is_empty() {
            return Err(AppError::field(
                "forms",
                "name a coverage assertion or a questionnaire",
            ));
        }
        if req.assertions.len() + req.rules.len() > MAX_FORMS {
            return Err(AppError::field(
                "forms",
                format!("at most {MAX_FORMS} assertions and questionnaires"),
            ));
        }
        let mut out: Vec<FormFor> = Vec::new();
        // Each assertion read and each form handed out, for the audit log.
        let mut read: Vec<(&str, String, Option<MemberId>)> = Vec::new();
        let push = |out: &mut Vec<FormFor>, form: Form, assertion: Option<CoverageAssertion>| {
            let seen = out.iter().any(|f| {
                f.form.rule.id == form.rule.id && f.form.list_version == form.list_version
            });
            if !seen {
                out.push(FormFor { form, assertion });
            }
        };
        for (i, id) in req.assertions.iter().enumerate() {
            let assertion = self
                .find_assertion(caller, id, &format!("assertions[{i}]"))
                .await?;
            read.push((
                ASSERTION_RECORD_KIND,
                assertion.id.clone(),
                Some(assertion.member_id.clone()),
            ));
            if let Some(form) = assertion.form() {
                push(&mut out, form, Some(assertion));
            }
        }
        let rules = self.engine.rules();
        for (i, (rule, version)) in req.rules.iter().enumerate() {
            if rule.is_empty() || rule.len() > MAX_ID_LEN {
                return Err(AppError::field(
                    &format!("rules[{i}]"),
                    format!("a rule id is 1 to {MAX_ID_LEN} characters"),
                ));
            }
            let form = rules.form(rule, version.as_deref()).ok_or_else(|| {
                AppError::field(
                    &format!("rules[{i}]"),
                    match version {
                        Some(v) => {
                            format!("no rule {rule} with a questionnaire on list version {v}")
                        }
                        None => format!("no rule {rule} with a questionnaire"),
                    },
                )
            })?;
            push(&mut out, form, None);
        }
        let now = self.app.stored_now();
        let mut tx = self.app.store.begin().await?;
        read.extend(out.iter().map(|f| {
            (
                FORM_RECORD_KIND,
                format!("{}|{}", f.form.rule.id, f.form.list_version),
                f.assertion.as_ref().map(|a| a.member_id.clone()),
            )
        }));
        for (kind, id, member) in &read {
            tx.append_audit(
                &caller.audit_entry(kind, id, member.as_ref(), AuditOutcome::Allowed),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
