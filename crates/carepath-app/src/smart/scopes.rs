//! SMART system scopes: what a backend-service token lets its holder do with which
//! FHIR resource types.
//!
//! Both spellings are read: version 1 (`system/Claim.read`, `system/Claim.write`,
//! `system/Claim.*`) and version 2 (`system/Claim.cruds` or any subset of those
//! letters in that order, `system/Claim.rs`). `*` as the resource type means every
//! type. Only `system/` scopes exist here: a backend service acts for itself, not
//! for a patient or a signed-in user.

use std::fmt;

/// Most scopes in one set (a request, a registration, a token).
pub const MAX_SCOPES: usize = 32;
/// Longest text of one scope.
pub const MAX_SCOPE_LEN: usize = 100;

/// One kind of access to a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Make a resource (`c`; version 1 `write`).
    Create,
    /// Read a resource by id (`r`; version 1 `read`).
    Read,
    /// Change a resource (`u`; version 1 `write`).
    Update,
    /// Remove a resource (`d`; version 1 `write`).
    Delete,
    /// Search or query resources (`s`; version 1 `read`).
    Search,
}

impl Access {
    /// The version 2 letters, in the order a scope spells them.
    const ORDER: [(char, Access); 5] = [
        ('c', Access::Create),
        ('r', Access::Read),
        ('u', Access::Update),
        ('d', Access::Delete),
        ('s', Access::Search),
    ];

    fn bit(self) -> u8 {
        match self {
            Access::Create => 1,
            Access::Read => 2,
            Access::Update => 4,
            Access::Delete => 8,
            Access::Search => 16,
        }
    }
}

const READ: u8 = 2 | 16;
const WRITE: u8 = 1 | 4 | 8;
const ALL: u8 = READ | WRITE;

/// One scope: a resource type (or every type) and the access granted to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None` for `*`, every resource type.
    resource: Option<String>,
    access: u8,
    /// The scope as written, kept so a grant repeats what was asked.
    text: String,
}

/// Why a scope was not understood; the message names it and is safe to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope {scope:?}: {reason}")]
pub struct ScopeError {
    /// The scope as written (cut to [`MAX_SCOPE_LEN`] characters).
    pub scope: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Scope {
    /// Reads one `system/<Type|*>.<access>` scope.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let fail = |reason: &str| ScopeError {
            scope: text.chars().take(MAX_SCOPE_LEN).collect(),
            reason: reason.to_owned(),
        };
        if text.len() > MAX_SCOPE_LEN {
            return Err(fail(&format!("longer than {MAX_SCOPE_LEN} characters")));
        }
        let Some(rest) = text.strip_prefix("system/") else {
            return Err(fail("only system/ scopes are granted to backend services"));
        };
        let Some((resource, access)) = rest.split_once('.') else {
            return Err(fail("expected system/<resource type>.<access>"));
        };
        let resource = match resource {
            "*" => None,
            name if is_resource_type(name) => Some(name.to_owned()),
            _ => return Err(fail("the resource type must be a FHIR type name or *")),
        };
        let access = match access {
            "read" => READ,
            "write" => WRITE,
            "*" => ALL,
            letters => parse_letters(letters).ok_or_else(|| {
                fail("access must be read, write, * or letters of cruds in that order")
            })?,
        };
        Ok(Scope {
            resource,
            access,
            text: text.to_owned(),
        })
    }

    /// Whether this scope alone lets its holder have `access` to `resource`.
    pub fn allows(&self, resource: &str, access: Access) -> bool {
        self.resource.as_deref().is_none_or(|r| r == resource) && self.access & access.bit() != 0
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A FHIR resource type name: a capital letter, then letters.
fn is_resource_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphabetic())
}

/// The access of version 2 letters: a non-empty subset of `cruds`, in that order,
/// each once.
fn parse_letters(letters: &str) -> Option<u8> {
    let mut access = 0;
    let mut next = 0;
    for c in letters.chars() {
        let at = Access::ORDER[next..].iter().position(|(l, _)| *l == c)? + next;
        access |= Access::ORDER[at].1.bit();
        next = at + 1;
    }
    (access != 0).then_some(access)
}

/// The scopes a token carries, a client is registered with, or a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// No scope at all: a token without a `scope` claim allows nothing through a
    /// door that checks scopes.
    pub fn none() -> Scopes {
        Scopes(Vec::new())
    }

    /// Reads space-separated scopes (at most [`MAX_SCOPES`]); a scope written twice
    /// counts once.
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        let mut scopes: Vec<Scope> = Vec::new();
        for word in text.split_ascii_whitespace() {
            let scope = Scope::parse(word)?;
            if !scopes.iter().any(|s| s.text == scope.text) {
                scopes.push(scope);
            }
            if scopes.len() > MAX_SCOPES {
                return Err(ScopeError {
                    scope: word.chars().take(MAX_SCOPE_LEN).collect(),
                    reason: format!("more than {MAX_SCOPES} scopes"),
                });
            }
        }
        Ok(Scopes(scopes))
    }

    /// Whether any scope lets its holder have `access` to `resource` (a FHIR type
    /// name such as `Claim`).
    pub fn allows(&self, resource: &str, access: Access) -> bool {
        self.0.iter().any(|s| s.allows(resource, access))
    }

    /// Whether these scopes together grant everything `scope` asks: each access it
    /// names, for its resource type (a `*` scope is granted only by `*` scopes).
    pub fn grants(&self, scope: &Scope) -> bool {
        Access::ORDER.iter().all(|(_, access)| {
            scope.access & access.bit() == 0
                || self.0.iter().any(|mine| {
                    mine.access & access.bit() != 0
                        && (mine.resource.is_none() || mine.resource == scope.resource)
                })
        })
    }

    /// The scopes, in the order first written.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether there is no scope.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Scopes {
    /// The scopes as written, space-separated (the `scope` of a grant or a token).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&scope.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::*;

    /// Each row: a scope, then which of (create, read, update, delete, search) it
    /// allows on `Claim` and on `Subscription`.
    #[test]
    fn scopes_allow_what_they_spell() {
        let table: &[(&str, &str, &str)] = &[
            ("system/Claim.read", "-r--s", "-----"),
            ("system/Claim.write", "c-ud-", "-----"),
            ("system/Claim.*", "cruds", "-----"),
            ("system/*.read", "-r--s", "-r--s"),
            ("system/*.*", "cruds", "cruds"),
            ("system/Claim.cruds", "cruds", "-----"),
            ("system/Claim.c", "c----", "-----"),
            ("system/Claim.rs", "-r--s", "-----"),
            ("system/Claim.cr", "cr---", "-----"),
            ("system/Subscription.crd", "-----", "cr-d-"),
        ];
        let all = [Create, Read, Update, Delete, Search];
        for (text, claim, subscription) in table {
            let scopes = Scopes::parse(text).unwrap();
            for (resource, expected) in [("Claim", claim), ("Subscription", subscription)] {
                let got: String = all
                    .iter()
                    .zip("cruds".chars())
                    .map(|(a, l)| if scopes.allows(resource, *a) { l } else { '-' })
                    .collect();
                assert_eq!(&got, expected, "{text} on {resource}");
            }
        }
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "patient/Claim.read",
            "user/*.read",
            "system/Claim",
            "system/claim.read",
            "system/Claim.rc",
            "system/Claim.rr",
            "system/Claim.x",
            "system/Claim.",
            "system/.read",
            "system/Claim.read?status=active",
            "openid",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad} should be refused");
        }
        let long = format!("system/{}.read", "A".repeat(MAX_SCOPE_LEN));
        assert!(Scopes::parse(&long).is_err());
        let many: Vec<String> = (0..=MAX_SCOPES)
            .map(|i| format!("system/T{}.r", "a".repeat(i)))
            .collect();
        assert!(Scopes::parse(&many.join(" ")).is_err());
    }

    #[test]
    fn no_scope_allows_nothing() {
        assert!(!Scopes::none().allows("Claim", Read));
        assert!(Scopes::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn a_grant_covers_each_access_asked_for() {
        let registered = Scopes::parse("system/Claim.cr system/*.s").unwrap();
        let grants = |s: &str| registered.grants(&Scope::parse(s).unwrap());
        assert!(grants("system/Claim.c"));
        assert!(grants("system/Claim.read"), "r from Claim.cr, s from *.s");
        assert!(grants("system/Subscription.s"));
        assert!(!grants("system/Claim.write"), "no update or delete");
        assert!(!grants("system/Subscription.r"));
        assert!(!grants("system/*.rs"), "a wildcard needs a wildcard grant");
        assert!(
            Scopes::parse("system/*.*")
                .unwrap()
                .grants(&Scope::parse("system/Claim.cruds").unwrap())
        );
    }

    #[test]
    fn scopes_print_as_written_once_each() {
        let scopes = Scopes::parse("system/Claim.cr  system/Claim.cr system/*.read").unwrap();
        assert_eq!(scopes.to_string(), "system/Claim.cr system/*.read");
    }
}
