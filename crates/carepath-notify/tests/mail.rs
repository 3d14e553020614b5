//! The postal-mail channel: PDF letters in a print-batch folder, read back with
//! pdftotext; and the portal channel and the channel registry.

mod support;

use std::sync::Arc;

use carepath_core::ContactChannel;
use carepath_notify::{
    Block, Channel, Channels, Destination, LetterAddress, MailChannel, MailSettings, PortalChannel,
    RecipientRole, render_letter,
};
use support::{assert_contains_all, denial, denial_phrases, pdf_text};

#[tokio::test]
async fn denial_letters_hold_every_required_part_in_english_and_spanish() {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let channel = MailChannel::new(&MailSettings {
        batch_dir: dir.path().to_path_buf(),
    })
    .unwrap();
    for language in ["en", "es"] {
        let notice = denial(RecipientRole::Member, ContactChannel::Mail, language);
        assert_eq!(notice.template.language.as_str(), language);
        let receipt = channel.deliver(&notice).await.unwrap();
        assert_eq!(receipt.reference, format!("letters/{}.pdf", notice.key));

        let path = dir.path().join(&receipt.reference);
        let text = pdf_text(&path);
        assert_contains_all(&text, &denial_phrases(language));
        let Destination::Mail { address } = &notice.destination else {
            panic!("not a mail notice")
        };
        assert_contains_all(
            &text,
            &[
                &notice.recipient_name,
                &address.lines[0],
                "Carepath Health Plan",
            ],
        );
        let date = if language == "es" {
            "25 de noviembre de 2026"
        } else {
            "November 25, 2026"
        };
        assert_contains_all(&text, &[date]);
    }
    let manifest = channel.manifest().unwrap();
    assert_eq!(manifest.len(), 2);
    let entry = &manifest[0];
    assert_eq!(entry.file, format!("letters/{}.pdf", entry.idempotency_key));
    assert!(entry.pages >= 2, "a denial runs over one page: {entry:?}");
    assert_eq!(entry.letter_date, "2026-11-25");
    assert!(entry.template.starts_with("precert-denied v1"));
    // Only finished letters are in the folder.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("letters"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".pdf"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Letters hold member data: the folder and its files are the owner's only, even
    // when the folder was made beforehand under a permissive umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("letters")), 0o700);
        assert_eq!(mode(&dir.path().join("manifest.jsonl")), 0o600);
        assert_eq!(mode(&dir.path().join(&manifest[0].file)), 0o600);
    }
}

#[tokio::test]
async fn delivering_the_same_notice_again_writes_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let settings = MailSettings {
        batch_dir: dir.path().to_path_buf(),
    };
    let notice = denial(RecipientRole::Member, ContactChannel::Mail, "en");
    let first = MailChannel::new(&settings).unwrap();
    first.deliver(&notice).await.unwrap();
    let path = dir.path().join(format!("letters/{}.pdf", notice.key));
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();

    // A second process (after a crash, say) sees the manifest and does nothing.
    let second = MailChannel::new(&settings).unwrap();
    let receipt = second.deliver(&notice).await.unwrap();
    assert_eq!(
        receipt.detail.as_deref(),
        Some("already in the print batch")
    );
    assert_eq!(second.manifest().unwrap().len(), 1);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written
    );
}

#[tokio::test]
async fn a_letter_without_its_manifest_line_is_completed_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let settings = MailSettings {
        batch_dir: dir.path().to_path_buf(),
    };
    let notice = denial(RecipientRole::Member, ContactChannel::Mail, "en");
    let channel = MailChannel::new(&settings).unwrap();
    channel.deliver(&notice).await.unwrap();
    // Simulate a crash after the rename, before the manifest append.
    std::fs::write(dir.path().join("manifest.jsonl"), "").unwrap();
    channel.deliver(&notice).await.unwrap();
    assert_eq!(channel.manifest().unwrap().len(), 1);
}

#[test]
fn long_letters_break_across_numbered_pages() {
    let mut notice = denial(RecipientRole::Member, ContactChannel::Mail, "en");
    notice.body = (1..=120)
        .map(|i| Block::Paragraph(format!("Paragraph {i} of a long letter about the plan.")))
        .collect();
    let Destination::Mail { address } = notice.destination.clone() else {
        panic!("not a mail notice")
    };
    let letter = render_letter(
        &notice,
        &LetterAddress::Postal {
            name: notice.recipient_name.clone(),
            address,
        },
    )
    .unwrap();
    assert!(letter.pages >= 4, "{} pages", letter.pages);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.pdf");
    std::fs::write(&path, &letter.pdf).unwrap();
    let text = pdf_text(&path);
    let last = format!("Page {0} of {0}", letter.pages);
    assert_contains_all(
        &text,
        &["Page 1 of", &last, "Paragraph 1 of", "Paragraph 120 of"],
    );
}

#[tokio::test]
async fn portal_notices_are_delivered_to_the_inbox_and_channels_dispatch() {
    let dir = tempfile::tempdir().unwrap();
    let channels = Channels::new().with(Arc::new(PortalChannel)).with(Arc::new(
        MailChannel::new(&MailSettings {
            batch_dir: dir.path().to_path_buf(),
        })
        .unwrap(),
    ));
    let mut notice = denial(RecipientRole::Member, ContactChannel::Mail, "en");
    assert_eq!(
        channels.deliver(&notice).await.unwrap().channel,
        ContactChannel::Mail
    );

    notice.channel = ContactChannel::Portal;
    notice.destination = Destination::Portal {
        inbox: "member:M100001".into(),
    };
    let receipt = channels.deliver(&notice).await.unwrap();
    assert_eq!(receipt.reference, "member:M100001");

    notice.channel = ContactChannel::Fax;
    let err = channels.deliver(&notice).await.unwrap_err();
    assert!(
        err.is_retryable(),
        "an unconfigured channel may be configured later: {err}"
    );
    let err = PortalChannel.deliver(&notice).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
}
