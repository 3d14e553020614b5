//! Reading FHIR JSON: each element carries the FHIRPath it was reached by, so every
//! problem found in a request names the element (`Claim.item[0].productOrService`).
//!
//! The door reads only the elements it maps and ignores the rest, as a FHIR server
//! must for extensions and profiles it does not know.

use serde_json::Value;

/// A FHIR resource's element and the FHIRPath expression that reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The root of a resource; its path is the resource type (`Claim`).
    pub fn resource(value: &'a Value) -> Self {
        let path = value
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Resource")
            .to_owned();
        Node { value, path }
    }

    /// An element reached by `path`.
    pub fn at(value: &'a Value, path: impl Into<String>) -> Self {
        Node {
            value,
            path: path.into(),
        }
    }

    /// The FHIRPath expression of this element.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The element's JSON.
    pub fn value(&self) -> &'a Value {
        self.value
    }

    /// The path of a child element, present or not.
    pub fn child_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The child element `name`, when present and not null.
    pub fn get(&self, name: &str) -> Option<Node<'a>> {
        self.value
            .get(name)
            .filter(|v| !v.is_null())
            .map(|value| Node {
                value,
                path: self.child_path(name),
            })
    }

    /// The elements of the repeating child `name` (a single value counts as one).
    pub fn list(&self, name: &str) -> Vec<Node<'a>> {
        match self.value.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}.{name}[{i}]", self.path),
                })
                .collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(value) => vec![Node {
                value,
                path: self.child_path(name),
            }],
        }
    }

    /// The child `name` as a string, trimmed; `None` when absent or empty.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.value
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The codings of this CodeableConcept: `(system, code)` pairs with a code.
    pub fn codings(&self) -> Vec<(&'a str, &'a str)> {
        self.list("coding")
            .iter()
            .filter_map(|c| Some((c.str("system").unwrap_or(""), c.str("code")?)))
            .collect()
    }

    /// The code of this CodeableConcept in the first of `systems` it has one in.
    pub fn code_in(&self, systems: &[&str]) -> Option<&'a str> {
        let codings = self.codings();
        systems.iter().find_map(|system| {
            codings
                .iter()
                .find(|(s, _)| s == system)
                .map(|(_, code)| *code)
        })
    }

    /// The value of the first identifier (in the child `identifier`) in `system`.
    pub fn identifier_in(&self, system: &str) -> Option<&'a str> {
        self.list("identifier")
            .iter()
            .find(|i| i.str("system") == Some(system))
            .and_then(|i| i.str("value"))
    }

    /// The extensions with `url`, in the child `extension`.
    pub fn extensions(&self, url: &str) -> Vec<Node<'a>> {
        self.list("extension")
            .into_iter()
            .filter(|e| e.str("url") == Some(url))
            .collect()
    }
}

/// The resources of a Bundle and how references among them resolve.
#[derive(Debug)]
pub struct Entries<'a> {
    entries: Vec<(Option<&'a str>, &'a Value)>,
}

impl<'a> Entries<'a> {
    /// The entries of `bundle` that carry a resource.
    pub fn of(bundle: &'a Value) -> Self {
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| {
                        let resource = e.get("resource").filter(|r| r.is_object())?;
                        Some((e.get("fullUrl").and_then(Value::as_str), resource))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Entries { entries }
    }

    /// The resources of `resource_type`, in bundle order.
    /// The resources of several values, each a resource or a Bundle of them (the
    /// prefetched data of a CDS Hooks call).
    pub fn of_all(values: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut entries = Vec::new();
        for value in values {
            match value.get("resourceType").and_then(Value::as_str) {
                Some("Bundle") => entries.extend(Entries::of(value).entries),
                Some(_) => entries.push((None, value)),
                None => {}
            }
        }
        Entries { entries }
    }

    /// Every resource, in order.
    pub fn resources(&self) -> impl Iterator<Item = &'a Value> + '_ {
        self.entries.iter().map(|(_, r)| *r)
    }

    pub fn of_type(&self, resource_type: &str) -> Vec<&'a Value> {
        self.entries
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type))
            .collect()
    }

    /// The resource a reference element (`{"reference": ...}`) points to: by the
    /// entry's full URL, or by `Type/id` (also as the tail of a full URL).
    pub fn resolve(&self, reference: &Node<'_>) -> Option<&'a Value> {
        let target = reference.str("reference")?;
        if let Some((_, r)) = self.entries.iter().find(|(url, _)| *url == Some(target)) {
            return Some(r);
        }
        let mut parts = target.rsplit('/');
        let id = parts.next()?;
        let kind = parts.next()?;
        self.entries.iter().map(|(_, r)| *r).find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some(kind)
                && r.get("id").and_then(Value::as_str) == Some(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_name_each_element() {
        let claim = json!({"resourceType": "Claim", "item": [{"sequence": 1}, {"sequence": 2,
            "productOrService": {"coding": [{"system": "x", "code": "1"}, {"system": "y", "code": "2"}]}}]});
        let root = Node::resource(&claim);
        let items = root.list("item");
        assert_eq!(items[1].path(), "Claim.item[1]");
        let service = items[1].get("productOrService").unwrap();
        assert_eq!(service.path(), "Claim.item[1].productOrService");
        assert_eq!(service.code_in(&["y", "x"]), Some("2"));
        assert_eq!(items[0].get("productOrService"), None);
        assert_eq!(
            items[0].child_path("productOrService"),
            "Claim.item[0].productOrService"
        );
    }

    #[test]
    fn references_resolve_by_full_url_or_type_and_id() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p"}},
            {"fullUrl": "http://x/fhir/Organization/o", "resource": {"resourceType": "Organization", "id": "o"}}]});
        let entries = Entries::of(&bundle);
        let by_url = json!({"reference": "urn:uuid:1"});
        let by_id = json!({"reference": "Organization/o"});
        let missing = json!({"reference": "Practitioner/o"});
        let node = |v| Node::at(v, "r");
        assert_eq!(entries.resolve(&node(&by_url)).unwrap()["id"], "p");
        assert_eq!(entries.resolve(&node(&by_id)).unwrap()["id"], "o");
        assert!(entries.resolve(&node(&missing)).is_none());
        assert_eq!(entries.of_type("Patient").len(), 1);
    }
}
