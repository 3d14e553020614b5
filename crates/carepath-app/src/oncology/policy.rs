//! Who may submit, see and revise an oncology plan.

use carepath_core::{Actor, MemberId, Npi, Role};
use carepath_precert::PrecertCase;

/// Whether `actor` may submit a plan treated by `treating` and given at `servicing`:
/// either provider, or plan intake staff (nurses, admins, internal services).
///
/// ```
/// use carepath_app::oncology::may_submit;
/// use carepath_core::{Actor, Npi, Role};
///
/// let treating = Npi::parse("1381083801").unwrap();
/// let oncologist = Actor::new(Role::Provider, "1381083801").unwrap();
/// let member = Actor::new(Role::Member, "M100001").unwrap();
/// assert!(may_submit(&oncologist, &treating, &treating));
/// assert!(!may_submit(&member, &treating, &treating));
/// ```
pub fn may_submit(actor: &Actor, treating: &Npi, servicing: &Npi) -> bool {
    match actor.role {
        Role::Provider => actor
            .provider_npi()
            .is_some_and(|me| me == *treating || me == *servicing),
        Role::Nurse | Role::Admin | Role::Service => true,
        Role::Member | Role::PhysicianReviewer => false,
    }
}

/// Whether `actor` may see a plan treated by `treating` for `member` whose
/// precertification case is `case`: the treating provider or the case's servicing
/// provider, the member, and plan staff.
pub fn may_view(actor: &Actor, treating: &Npi, member: &MemberId, case: &PrecertCase) -> bool {
    match actor.role {
        Role::Provider => actor
            .provider_npi()
            .is_some_and(|npi| npi == *treating || npi == case.request.servicing_provider.npi),
        Role::Member => actor.member_id().is_some_and(|m| m == *member),
        Role::Nurse | Role::PhysicianReviewer | Role::Admin | Role::Service => true,
    }
}

/// Whether `actor` may adopt an alternative for a plan treated by `treating`: the
/// treating provider only.
pub fn may_adopt(actor: &Actor, treating: &Npi) -> bool {
    actor.role == Role::Provider && actor.provider_npi().is_some_and(|me| me == *treating)
}
