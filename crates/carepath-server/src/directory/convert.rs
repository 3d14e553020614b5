//! Conversions of `carepath.directory.v1` requests into the directory use cases'
//! commands. The records themselves (plans, members, providers, staff) convert in
//! [`crate::convert`], which other areas share.

use carepath_app::{
    PageRequest,
    directory::{ListMembers, ListProviders, ListStaff},
};
use carepath_core::{Invalid, MemberId, PlanId};
use carepath_proto::{common::v1 as common, directory::v1 as pb};

use crate::{
    convert::{optional, provider_kind_from_proto, required, staff_role_from_proto},
    error::{ApiError, ApiResult},
};

/// Parses the one id a request names.
pub fn id<T, E: std::fmt::Display>(
    field: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> ApiResult<T> {
    let mut invalid = Invalid::new();
    let parsed = required(&mut invalid, field, value, parse);
    invalid.into_result()?;
    Ok(parsed.expect("no violation means the id parsed"))
}

pub fn page(page: Option<common::PageRequest>) -> PageRequest {
    let page = page.unwrap_or_default();
    PageRequest {
        token: page.page_token,
        size: page.page_size,
    }
}

fn text(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

pub fn list_members(req: pb::ListMembersRequest) -> ApiResult<ListMembers> {
    let mut invalid = Invalid::new();
    let plan_id = optional(&mut invalid, "plan_id", &req.plan_id, PlanId::parse);
    let subscriber_id = optional(
        &mut invalid,
        "subscriber_id",
        &req.subscriber_id,
        MemberId::parse,
    );
    invalid.into_result()?;
    Ok(ListMembers {
        plan_id: plan_id.flatten(),
        subscriber_id: subscriber_id.flatten(),
        page: page(req.page),
    })
}

pub fn list_providers(req: pb::ListProvidersRequest) -> ApiResult<ListProviders> {
    let kind = match req.kind {
        0 => None,
        k => Some(
            provider_kind_from_proto(k)
                .ok_or_else(|| ApiError::field("kind", "is not a known PROVIDER_KIND_* value"))?,
        ),
    };
    Ok(ListProviders {
        specialty: text(req.specialty),
        kind,
        country: text(req.country),
        in_network_for_plan: text(req.in_network_for_plan),
        language: text(req.language),
        page: page(req.page),
    })
}

pub fn list_staff(req: pb::ListStaffRequest) -> ApiResult<ListStaff> {
    let role = match req.role {
        0 => None,
        r => Some(
            staff_role_from_proto(r)
                .ok_or_else(|| ApiError::field("role", "is not a known STAFF_ROLE_* value"))?,
        ),
    };
    Ok(ListStaff {
        role,
        specialty: text(req.specialty),
        page: page(req.page),
    })
}
