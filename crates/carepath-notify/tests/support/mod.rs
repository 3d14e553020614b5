//! Shared fixtures for the channel tests: real rendered notices from the shipped rules,
//! templates and demo directory, and helpers for the external tools the tests drive.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use carepath_core::{ContactChannel, DirectoryBundle, DomainEvent};
use carepath_notify::{
    NoticeRules, RecipientRole, RenderedNotice, TemplateCatalog, examples, plan_notices,
};
use chrono::{DateTime, NaiveDate};

/// A denial rendered for `role` on `channel`, about a member who reads `language`.
pub fn denial(role: RecipientRole, channel: ContactChannel, language: &str) -> RenderedNotice {
    let dir = DirectoryBundle::demo().unwrap();
    let member = dir
        .members
        .iter()
        .find(|m| m.language.as_str() == language)
        .expect("a demo member reading the language");
    let provider_channel = if role == RecipientRole::Member {
        ContactChannel::Fax
    } else {
        channel
    };
    let provider = dir
        .providers
        .iter()
        .find(|p| p.preferred_channel == provider_channel)
        .expect("a demo provider preferring the channel");
    let event = DomainEvent {
        id: format!("evt-denial-{language}-{channel}"),
        kind: "precert.case.denied".into(),
        aggregate_kind: "precert_case".into(),
        aggregate_id: "PC-2026-000123".into(),
        member_id: Some(member.id.clone()),
        occurred_at: DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
            .unwrap()
            .to_utc(),
        payload: examples::denial_payload(provider),
    };
    let plan = plan_notices(&NoticeRules::shipped().unwrap(), &event, &dir).unwrap();
    let notice = plan
        .notices
        .iter()
        .find(|n| n.recipient.role == role && n.channel == channel)
        .unwrap_or_else(|| panic!("no {role} notice on {channel} in {plan:?}"));
    TemplateCatalog::shipped()
        .unwrap()
        .render(notice, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap())
        .unwrap()
}

/// What every denial must state, in `language` (see the ERISA and CMS notice rules).
pub fn denial_phrases(language: &str) -> Vec<&'static str> {
    let mut phrases = vec![
        "MRI brain without and with contrast",
        "PC-2026-000123",
        "six weeks of treatment",
        "Certificate of Coverage, section 4.2",
        "IMG-HEAD-07",
        "Notes showing six weeks of treatment and its outcome",
        "1-800-555-0144",
        "72",
        "502(a)",
        "1-800-555-0142",
    ];
    if language == "es" {
        phrases.extend([
            "3 de diciembre de 2026",
            "Por qué se denegó la solicitud",
            "copia gratuita",
            "Conversación entre médicos",
            "24 de mayo de 2027",
            "apelación acelerada",
            "revisión externa",
            "demanda civil",
        ]);
    } else {
        phrases.extend([
            "December 3, 2026",
            "Why the request was denied",
            "free of charge",
            "Peer-to-peer discussion",
            "May 24, 2027",
            "expedited appeal",
            "external review",
            "civil action",
        ]);
    }
    phrases
}

/// Asserts that `text`, with whitespace collapsed, contains every phrase.
pub fn assert_contains_all(text: &str, phrases: &[&str]) {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for phrase in phrases {
        assert!(flat.contains(phrase), "missing {phrase:?} in:\n{flat}");
    }
}

/// The text of a PDF, through poppler's `pdftotext`.
pub fn pdf_text(path: &Path) -> String {
    let output = Command::new("pdftotext")
        .arg("-enc")
        .arg("UTF-8")
        .arg(path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "pdftotext is needed to read letters back (apt-get install -y poppler-utils): {e}"
            )
        });
    assert!(
        output.status.success(),
        "pdftotext failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A loopback port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
