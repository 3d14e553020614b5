//! The vocabulary of case management: kinds of case, phases, outcomes, and the states
//! of goals, tasks and arranged services, each with one snake_case name used in JSON,
//! on the wire and in logs.

use serde::{Deserialize, Serialize};

/// Why a name was not one of the known values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Implements `ALL`, `as_str`, `parse` and `Display` for a fieldless enum from one table,
/// so the stored names and the serde names cannot drift apart.
macro_rules! names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            pub fn parse(s: &str) -> Result<Self, UnknownName> {
                match s.trim() {
                    $($name => Ok($ty::$variant),)+
                    other => Err(UnknownName {
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
    };
}

/// What a case is about; decides which nurses it suits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// Early referral from an oncology treatment plan.
    Oncology,
    Maternity,
    /// Moves between care settings after an inpatient admission or transfer.
    Transitions,
    /// Connecting the member with an expert physician, care abroad.
    DecisionSupport,
    /// Everything else, including the member's own wish to learn more.
    General,
}

names!(CaseKind, "case kind", {
    Oncology => "oncology",
    Maternity => "maternity",
    Transitions => "transitions",
    DecisionSupport => "decision_support",
    General => "general",
});

impl CaseKind {
    /// The nurse specialty (as in the staff directory) that suits this kind of case.
    pub fn nurse_specialty(self) -> &'static str {
        match self {
            CaseKind::Oncology => "oncology",
            CaseKind::Maternity => "maternity",
            CaseKind::Transitions => "transitions",
            CaseKind::DecisionSupport | CaseKind::General => "general",
        }
    }
}

/// The phases of case-management practice (CMSA). See [`crate::ManagedCase::move_to`]
/// for the moves between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Screening,
    Assessment,
    Planning,
    Implementation,
    Monitoring,
    TransitionsOfCare,
    Closed,
}

names!(Phase, "phase", {
    Screening => "screening",
    Assessment => "assessment",
    Planning => "planning",
    Implementation => "implementation",
    Monitoring => "monitoring",
    TransitionsOfCare => "transitions_of_care",
    Closed => "closed",
});

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The care plan's goals were met.
    GoalsMet,
    /// Closed with goals partly met (the member stabilised, care continues elsewhere).
    GoalsPartiallyMet,
    /// The member declined case management.
    MemberDeclined,
    /// The member could not be reached.
    Unreachable,
    /// Screening found case management not needed.
    NotEligible,
    /// The member's coverage ended.
    CoverageEnded,
    Deceased,
}

names!(Outcome, "outcome", {
    GoalsMet => "goals_met",
    GoalsPartiallyMet => "goals_partially_met",
    MemberDeclined => "member_declined",
    Unreachable => "unreachable",
    NotEligible => "not_eligible",
    CoverageEnded => "coverage_ended",
    Deceased => "deceased",
});

impl Outcome {
    /// Outcomes that only make sense once care was planned and delivered; the others
    /// may end a case in any open phase.
    pub fn needs_care_delivered(self) -> bool {
        matches!(self, Outcome::GoalsMet | Outcome::GoalsPartiallyMet)
    }
}

/// Where a goal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalStatus {
    Active,
    Met,
    NotMet,
    Cancelled,
}

names!(GoalStatus, "goal status", {
    Active => "active",
    Met => "met",
    NotMet => "not_met",
    Cancelled => "cancelled",
});

impl GoalStatus {
    /// Active goals may become met, not met or cancelled; those are final.
    pub fn may_become(self, next: GoalStatus) -> bool {
        self == GoalStatus::Active && next != GoalStatus::Active
    }
}

/// Where a task stands. The state machine:
///
/// ```text
/// open ──> in_progress ──> done
///   │          │  ^
///   │          v  │
///   │        blocked
///   └──> done | cancelled; open, in_progress and blocked may be cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    InProgress,
    Blocked,
    Done,
    Cancelled,
}

names!(TaskStatus, "task status", {
    Open => "open",
    InProgress => "in_progress",
    Blocked => "blocked",
    Done => "done",
    Cancelled => "cancelled",
});

impl TaskStatus {
    /// Whether the state machine allows `self -> next`.
    pub fn may_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Open, InProgress | Done | Cancelled)
                | (InProgress, Blocked | Done | Cancelled)
                | (Blocked, InProgress | Cancelled)
        )
    }

    /// Done and cancelled tasks are finished and never overdue.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Done | TaskStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

names!(Priority, "priority", {
    Low => "low",
    Normal => "normal",
    High => "high",
    Urgent => "urgent",
});

/// How a contact with the member or their care team happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionChannel {
    Call,
    Email,
    /// A message through the secure channel.
    Message,
    /// The nurse's own note; no contact happened.
    Note,
    Mail,
    Portal,
}

names!(InteractionChannel, "contact channel", {
    Call => "call",
    Email => "email",
    Message => "message",
    Note => "note",
    Mail => "mail",
    Portal => "portal",
});

/// A care setting a member moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CareSetting {
    AcuteHospital,
    SkilledNursing,
    Rehabilitation,
    LongTermAcuteCare,
    Hospice,
    Home,
    HomeWithHomeHealth,
}

names!(CareSetting, "care setting", {
    AcuteHospital => "acute_hospital",
    SkilledNursing => "skilled_nursing",
    Rehabilitation => "rehabilitation",
    LongTermAcuteCare => "long_term_acute_care",
    Hospice => "hospice",
    Home => "home",
    HomeWithHomeHealth => "home_with_home_health",
});

/// What the nurse arranges for the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    HomeHealthCare,
    DurableMedicalEquipment,
    CaregiverRespite,
    CommunityResource,
    HomeInfusion,
}

names!(ServiceKind, "service kind", {
    HomeHealthCare => "home_health_care",
    DurableMedicalEquipment => "durable_medical_equipment",
    CaregiverRespite => "caregiver_respite",
    CommunityResource => "community_resource",
    HomeInfusion => "home_infusion",
});

impl ServiceKind {
    /// Services on the plan's precertification list; arranging them links the
    /// precertification case when one exists.
    pub fn usually_needs_precertification(self) -> bool {
        matches!(
            self,
            ServiceKind::HomeHealthCare
                | ServiceKind::DurableMedicalEquipment
                | ServiceKind::HomeInfusion
        )
    }
}

/// Where an arranged service stands: requested ─> arranged ─> delivered; requested
/// and arranged services may be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Requested,
    Arranged,
    Delivered,
    Cancelled,
}

names!(ServiceState, "service state", {
    Requested => "requested",
    Arranged => "arranged",
    Delivered => "delivered",
    Cancelled => "cancelled",
});

impl ServiceState {
    pub fn may_become(self, next: ServiceState) -> bool {
        use ServiceState::*;
        matches!(
            (self, next),
            (Requested, Arranged | Cancelled) | (Arranged, Delivered | Cancelled)
        )
    }
}

/// Why the member should be connected with an expert physician.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionReason {
    SeriousDiagnosis,
    RareDiagnosis,
    MajorSurgery,
    CostlyTreatment,
}

names!(DecisionReason, "decision-support reason", {
    SeriousDiagnosis => "serious_diagnosis",
    RareDiagnosis => "rare_diagnosis",
    MajorSurgery => "major_surgery",
    CostlyTreatment => "costly_treatment",
});

/// For a member abroad: is local care appropriate, or is travel needed?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CareAbroad {
    LocalCareAppropriate,
    TravelNeeded,
}

names!(CareAbroad, "care-abroad recommendation", {
    LocalCareAppropriate => "local_care_appropriate",
    TravelNeeded => "travel_needed",
});

/// Where a referral came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralSource {
    Nurse,
    Provider,
    Member,
    Admin,
    OncologyPlan,
    InpatientPrecertification,
    SecondOpinion,
}

names!(ReferralSource, "referral source", {
    Nurse => "nurse",
    Provider => "provider",
    Member => "member",
    Admin => "admin",
    OncologyPlan => "oncology_plan",
    InpatientPrecertification => "inpatient_precertification",
    SecondOpinion => "second_opinion",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_state_machine_is_the_documented_one() {
        use TaskStatus::*;
        let allowed: Vec<(TaskStatus, TaskStatus)> = TaskStatus::ALL
            .iter()
            .flat_map(|a| TaskStatus::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        assert_eq!(
            allowed,
            [
                (Open, InProgress),
                (Open, Done),
                (Open, Cancelled),
                (InProgress, Blocked),
                (InProgress, Done),
                (InProgress, Cancelled),
                (Blocked, InProgress),
                (Blocked, Cancelled),
            ]
        );
    }

    #[test]
    fn services_move_forward_or_are_cancelled() {
        use ServiceState::*;
        assert!(Requested.may_become(Arranged));
        assert!(Arranged.may_become(Delivered));
        assert!(!Requested.may_become(Delivered));
        assert!(!Delivered.may_become(Cancelled));
        assert!(!Cancelled.may_become(Requested));
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in CaseKind::ALL {
            assert_eq!(CaseKind::parse(kind.as_str()), Ok(*kind));
            assert_eq!(serde_json::to_string(kind).unwrap(), format!("\"{kind}\""));
        }
        for phase in Phase::ALL {
            assert_eq!(
                serde_json::to_string(phase).unwrap(),
                format!("\"{phase}\"")
            );
        }
        for c in InteractionChannel::ALL {
            assert_eq!(serde_json::to_string(c).unwrap(), format!("\"{c}\""));
        }
        let err = CaseKind::parse("dental").unwrap_err();
        assert!(err.to_string().contains("oncology, maternity"), "{err}");
    }
}
