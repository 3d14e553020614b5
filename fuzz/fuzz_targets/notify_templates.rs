//! Fuzzes the template-folder loader and rendering. One input holds the folder's
//! files by relative path (see `carepath_fuzz::split_files`; text before any header is
//! `catalog.toml`). The folder either loads, and then renders the notices the shipped
//! rules plan for every example event (each failure a named error), or it is rejected
//! with every problem naming its file.

#![no_main]

use std::sync::OnceLock;

use carepath_core::DirectoryBundle;
use carepath_fuzz::{assert_explained, split_files};
use carepath_notify::{NoticeRules, PlannedNotice, TemplateCatalog, examples, plan_notices};
use chrono::NaiveDate;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rules: NoticeRules,
    notices: Vec<PlannedNotice>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let directory = DirectoryBundle::demo().expect("the demo directory loads");
        let rules = NoticeRules::shipped().expect("the shipped rules load");
        let notices = examples::sample_events(&directory)
            .iter()
            .flat_map(|event| {
                plan_notices(&rules, event, &directory)
                    .expect("the example events plan")
                    .notices
            })
            .collect();
        Fixture { rules, notices }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = split_files(text, "catalog.toml")
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.to_owned()));
    let catalog = match TemplateCatalog::from_files(files) {
        Ok(catalog) => catalog,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without a problem");
            assert_explained(&errors.to_string(), text);
            for e in &errors.0 {
                assert_explained(&e.problem.to_string(), text);
            }
            return;
        }
    };
    let f = fixture();
    if let Err(e) = catalog.check_rules(&f.rules) {
        assert_explained(&e.to_string(), text);
    }
    let date = NaiveDate::from_ymd_opt(2026, 11, 25).expect("a date");
    for notice in &f.notices {
        match catalog.render(notice, date) {
            Ok(rendered) => assert_eq!(rendered.key, notice.key),
            Err(e) => assert_explained(&e.problem, text),
        }
    }
});
