//! Fuzzes the notice-rules loader: any text either loads to rules that plan every
//! example event without panicking (a payload problem is a named error), or is
//! rejected with every error naming the file.

#![no_main]

use std::sync::OnceLock;

use carepath_core::{DirectoryBundle, DomainEvent};
use carepath_fuzz::assert_explained;
use carepath_notify::{NoticeRules, TemplateCatalog, examples};
use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "fuzz.toml";

struct Fixture {
    directory: DirectoryBundle,
    events: Vec<DomainEvent>,
    templates: TemplateCatalog,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let directory = DirectoryBundle::demo().expect("the demo directory loads");
        let events = examples::sample_events(&directory);
        let templates = TemplateCatalog::shipped().expect("the shipped templates load");
        Fixture {
            directory,
            events,
            templates,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match NoticeRules::from_toml(SOURCE, text) {
        Ok(rules) => rules,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without an error: {text:?}");
            assert_explained(&errors.to_string(), text);
            for e in &errors.0 {
                assert_eq!(e.file, SOURCE);
                assert_explained(&e.problem, text);
                if let Some(rule) = &e.rule {
                    assert_explained(rule, text);
                }
            }
            return;
        }
    };
    for rule in &rules.rules {
        assert!(!rule.id.trim().is_empty(), "a rule without an id loaded");
        assert!(
            !rule.template.trim().is_empty(),
            "rule {} has no template",
            rule.id
        );
        for (field, values) in &rule.when {
            assert!(
                !values.is_empty(),
                "rule {}: when.{field} lists no value",
                rule.id
            );
        }
    }
    let f = fixture();
    if let Err(e) = f.templates.check_rules(&rules) {
        assert_explained(&e.to_string(), text);
    }
    for event in &f.events {
        if let Err(e) = rules.lookups_needed(event) {
            assert_explained(&e.to_string(), text);
        }
        match rules.plan(event, &f.directory) {
            Ok(plan) => {
                for n in &plan.notices {
                    assert_eq!(n.rules_version, rules.version);
                }
                for u in &plan.unreachable {
                    assert_explained(&u.reason, text);
                }
            }
            Err(e) => assert_explained(&e.problem, text),
        }
    }
});
