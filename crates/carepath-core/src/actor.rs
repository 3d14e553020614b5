//! Who is calling and in which role, plus the urgency and setting every request
//! carries.

use serde::{Deserialize, Serialize};

use crate::codes::{MemberId, Npi, StaffId, named_enum};
use crate::invalid::Invalid;

/// The role a caller acts in; services decide what a caller may see and do from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Office staff acting for a provider, identified by the provider's NPI.
    Provider,
    /// A member acting for themselves.
    Member,
    /// A nurse case manager or utilization-review nurse.
    Nurse,
    /// A physician reviewer, the only role that may make an adverse decision.
    PhysicianReviewer,
    /// Plan administrator: maintains the directory, rules and work assignments.
    Admin,
    /// Another internal service, such as a batch job or the notification sender.
    Service,
}

named_enum!(Role, "role", {
    Provider => "provider",
    Member => "member",
    Nurse => "nurse",
    PhysicianReviewer => "physician_reviewer",
    Admin => "admin",
    Service => "service",
});

/// An authenticated caller: a role and the subject id that role is known by.
///
/// Build one with [`Actor::new`] so the subject is checked against the role; the
/// fields are public for pattern matching and for the edge's own conversions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedActor")]
pub struct Actor {
    /// An NPI for providers, a member id for members, a staff id for staff, a service
    /// name for services.
    pub subject: String,
    pub role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedActor {
    subject: String,
    role: Role,
}

impl TryFrom<UncheckedActor> for Actor {
    type Error = Invalid;
    fn try_from(raw: UncheckedActor) -> Result<Self, Invalid> {
        Actor::new(raw.role, raw.subject)
    }
}

impl Actor {
    /// Checks that `subject` is the kind of id `role` is known by, and stores it in
    /// canonical form.
    pub fn new(role: Role, subject: impl Into<String>) -> Result<Self, Invalid> {
        let subject = subject.into();
        let canonical = match role {
            Role::Provider => Npi::parse(&subject).map(String::from),
            Role::Member => MemberId::parse(&subject).map(String::from),
            Role::Nurse | Role::PhysicianReviewer | Role::Admin => {
                StaffId::parse(&subject).map(String::from)
            }
            Role::Service => return Self::service(subject),
        };
        match canonical {
            Ok(subject) => Ok(Self { subject, role }),
            Err(e) => Err(Invalid::field("subject", e.to_string())),
        }
    }

    /// Service names are short lowercase slugs (`notification-sender`), so they read
    /// well in audit trails.
    fn service(subject: String) -> Result<Self, Invalid> {
        let ok = (1..=64).contains(&subject.len())
            && subject
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && subject.as_bytes()[0].is_ascii_lowercase();
        if !ok {
            return Err(Invalid::field(
                "subject",
                "service name must be 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter",
            ));
        }
        Ok(Self {
            subject,
            role: Role::Service,
        })
    }

    /// The provider's NPI when acting as a provider.
    pub fn provider_npi(&self) -> Option<Npi> {
        match self.role {
            Role::Provider => Npi::parse(&self.subject).ok(),
            _ => None,
        }
    }

    /// The member's id when acting as a member.
    pub fn member_id(&self) -> Option<MemberId> {
        match self.role {
            Role::Member => MemberId::parse(&self.subject).ok(),
            _ => None,
        }
    }

    /// The staff id when acting as a nurse, physician reviewer or administrator.
    pub fn staff_id(&self) -> Option<StaffId> {
        if self.is_staff() {
            StaffId::parse(&self.subject).ok()
        } else {
            None
        }
    }

    /// Plan staff may see every member's cases; providers and members only their own.
    pub fn is_staff(&self) -> bool {
        matches!(
            self.role,
            Role::Nurse | Role::PhysicianReviewer | Role::Admin
        )
    }
}

/// How fast a decision is needed; urgent (expedited) requests have far shorter
/// regulatory deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Urgent,
    Routine,
}

named_enum!(Urgency, "urgency", {
    Urgent => "urgent",
    Routine => "routine",
});

/// Where a service is delivered; coverage rules and site-of-service review depend on
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Inpatient,
    Outpatient,
    Office,
    Home,
}

named_enum!(Setting, "setting", {
    Inpatient => "inpatient",
    Outpatient => "outpatient",
    Office => "office",
    Home => "home",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked_by_role() {
        let cases = [
            (Role::Provider, "1234567893", true),
            (Role::Provider, "1234567890", false),
            (Role::Member, "M100001", true),
            (Role::Member, "M!", false),
            (Role::Nurse, "RN-001", true),
            (Role::PhysicianReviewer, "MD-ONC-01", true),
            (Role::Admin, "", false),
            (Role::Service, "notification-sender", true),
            (Role::Service, "Notification Sender", false),
            (Role::Service, "", false),
        ];
        for (role, subject, ok) in cases {
            assert_eq!(Actor::new(role, subject).is_ok(), ok, "{role} {subject:?}");
        }
        let err = Actor::new(Role::Provider, "1234567890").unwrap_err();
        assert_eq!(err.violations[0].field, "subject");
        assert_eq!(
            err.violations[0].description,
            "npi check digit does not match"
        );
    }

    #[test]
    fn typed_subjects_follow_the_role() {
        let provider = Actor::new(Role::Provider, "1234567893").unwrap();
        assert_eq!(
            provider.provider_npi(),
            Some(Npi::parse("1234567893").unwrap())
        );
        assert_eq!(provider.member_id(), None);
        assert!(!provider.is_staff());

        let nurse = Actor::new(Role::Nurse, "RN-001").unwrap();
        assert!(nurse.is_staff());
        assert_eq!(nurse.staff_id(), Some(StaffId::parse("RN-001").unwrap()));
        assert_eq!(nurse.provider_npi(), None);

        let member = Actor::new(Role::Member, "M100001").unwrap();
        assert_eq!(
            member.member_id(),
            Some(MemberId::parse("M100001").unwrap())
        );
        assert_eq!(member.staff_id(), None);
    }

    #[test]
    fn deserializing_an_actor_checks_it() {
        let ok: Actor = serde_json::from_str(r#"{"subject":"RN-001","role":"nurse"}"#).unwrap();
        assert_eq!(ok.role, Role::Nurse);
        assert!(serde_json::from_str::<Actor>(r#"{"subject":"x","role":"provider"}"#).is_err());
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(*role));
            assert_eq!(serde_json::to_string(role).unwrap(), format!("\"{role}\""));
        }
        for urgency in Urgency::ALL {
            assert_eq!(urgency.as_str().parse::<Urgency>(), Ok(*urgency));
        }
        for setting in Setting::ALL {
            assert_eq!(Setting::parse(setting.as_str()), Ok(*setting));
        }
        assert!(Urgency::parse("stat").is_err());
    }
}
