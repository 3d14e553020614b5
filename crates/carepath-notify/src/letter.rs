//! Lays a rendered notice out as a US Letter PDF: letterhead, date, the address block
//! where a #10 window envelope shows it, the subject line, then the body, breaking
//! pages as needed with "page n of N" on every page. Used for postal mail and fax.
//!
//! Text is set in the PDF standard fonts (Helvetica), so nothing is embedded and the
//! output is small; those fonts cover Western European text (WinAnsi), which is what
//! the shipped templates use.

use std::sync::OnceLock;

use carepath_core::Address;
use printpdf::{
    BuiltinFont, Mm, Op, ParsedFont, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point,
    Pt, TextItem,
};

use crate::notice::{Block, RenderedNotice};

/// US Letter, in points.
const PAGE_WIDTH: f32 = 612.0;
const PAGE_HEIGHT: f32 = 792.0;
const MARGIN_LEFT: f32 = 72.0;
const MARGIN_RIGHT: f32 = 72.0;
const TEXT_WIDTH: f32 = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
/// Body text stops here; the footer sits below.
const BOTTOM: f32 = 72.0;
const FOOTER_Y: f32 = 40.0;
/// First body line on pages after the first.
const CONTINUATION_TOP: f32 = PAGE_HEIGHT - 72.0;
/// First address line: 2.1 in from the top, 1 in from the left, inside the window
/// of a #10 envelope when the letter is folded in three.
const ADDRESS_TOP: f32 = PAGE_HEIGHT - 151.0;
/// The subject line starts below the window area (3.5 in from the top).
const SUBJECT_TOP: f32 = PAGE_HEIGHT - 252.0;

const BODY_SIZE: f32 = 10.0;
const BODY_LEADING: f32 = 13.5;
const HEADING_SIZE: f32 = 10.5;
const BULLET_INDENT: f32 = 14.0;

/// Who the letter is addressed to, as printed in the address block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetterAddress {
    Postal {
        name: String,
        address: Address,
    },
    /// A faxed letter shows the recipient and their fax number instead.
    Fax(String),
}

impl LetterAddress {
    /// The address block, one printed line per entry.
    pub fn lines(&self) -> Vec<String> {
        match self {
            LetterAddress::Fax(number) => vec![format!("Fax: {number}")],
            LetterAddress::Postal { name, address } => {
                let mut lines = vec![name.clone()];
                lines.extend(address.lines.iter().cloned());
                let postal = address.postal_code.as_deref().unwrap_or("");
                let region = address.region.as_deref().unwrap_or("");
                let country = address.country.as_str();
                if matches!(country, "US" | "CA") {
                    let tail = [region, postal]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    lines.push(if tail.is_empty() {
                        address.city.clone()
                    } else {
                        format!("{}, {tail}", address.city)
                    });
                } else {
                    lines.push(
                        [postal, address.city.as_str()]
                            .iter()
                            .filter(|s| !s.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                    if !region.is_empty() {
                        lines.push(region.to_owned());
                    }
                }
                if country != "US" {
                    lines.push(country_name(country).to_owned());
                }
                lines
            }
        }
    }
}

/// Postal country names for the last address line of mail leaving the US.
fn country_name(code: &str) -> &str {
    match code {
        "AE" => "UNITED ARAB EMIRATES",
        "CA" => "CANADA",
        "DE" => "GERMANY",
        "ES" => "SPAIN",
        "FR" => "FRANCE",
        "GB" => "UNITED KINGDOM",
        "MX" => "MEXICO",
        other => other,
    }
}

/// A laid-out letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub pdf: Vec<u8>,
    pub pages: usize,
}

/// Why a letter could not be laid out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("letter layout: {0}")]
pub struct LetterError(String);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Face {
    Regular,
    Bold,
}

impl Face {
    fn builtin(self) -> BuiltinFont {
        match self {
            Face::Regular => BuiltinFont::Helvetica,
            Face::Bold => BuiltinFont::HelveticaBold,
        }
    }
}

/// Glyph widths of the standard fonts, for line breaking.
struct Metrics {
    regular: Option<ParsedFont>,
    bold: Option<ParsedFont>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| Metrics {
        regular: BuiltinFont::Helvetica.get_parsed_font(),
        bold: BuiltinFont::HelveticaBold.get_parsed_font(),
    })
}

/// The width of `text` set in `face` at `size` points.
fn text_width(text: &str, face: Face, size: f32) -> f32 {
    let font = match face {
        Face::Regular => metrics().regular.as_ref(),
        Face::Bold => metrics().bold.as_ref(),
    };
    // Helvetica's average advance, for a glyph the metrics lack.
    const FALLBACK: f32 = 0.556;
    let em: f32 = text
        .chars()
        .map(|c| {
            font.and_then(|f| {
                let gid = f.lookup_glyph_index(c as u32)?;
                let w = f.get_glyph_width(gid)?;
                Some(f32::from(w) / f32::from(f.units_per_em.max(1)))
            })
            .unwrap_or(FALLBACK)
        })
        .sum();
    em * size
}

/// Breaks `text` into lines no wider than `width`; a word too long for a line is cut.
fn wrap(text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, face, size) <= width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut piece = String::new();
        for c in word.chars() {
            piece.push(c);
            if text_width(&piece, face, size) > width {
                piece.pop();
                lines.push(std::mem::take(&mut piece));
                piece.push(c);
            }
        }
        line = piece;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One line of text placed on a page.
struct Placed {
    x: f32,
    y: f32,
    face: Face,
    size: f32,
    text: String,
}

/// Pages of placed text, filled top to bottom.
struct Pages {
    pages: Vec<Vec<Placed>>,
    y: f32,
}

impl Pages {
    fn put(&mut self, x: f32, face: Face, size: f32, text: String) {
        if let Some(page) = self.pages.last_mut() {
            page.push(Placed {
                x,
                y: self.y,
                face,
                size,
                text,
            });
        }
    }

    /// Moves down `by`, starting a new page first when fewer than `needed` points are
    /// left above the bottom margin.
    fn ensure(&mut self, needed: f32) {
        if self.y - needed < BOTTOM {
            self.pages.push(Vec::new());
            self.y = CONTINUATION_TOP;
        }
    }
}

/// Lays out `notice` as a letter to `to`.
pub fn render_letter(notice: &RenderedNotice, to: &LetterAddress) -> Result<Letter, LetterError> {
    let mut pages = Pages {
        pages: vec![Vec::new()],
        y: PAGE_HEIGHT - 54.0,
    };
    let sender = &notice.sender;

    // Letterhead, top left.
    pages.put(MARGIN_LEFT, Face::Bold, 12.0, sender.name.clone());
    let mut head: Vec<String> = sender.department.iter().cloned().collect();
    head.extend(sender.address.iter().cloned());
    let mut contact = format!("Phone {}", sender.phone);
    if let Some(tty) = &sender.tty {
        contact.push_str(&format!("  TTY {tty}"));
    }
    if let Some(fax) = &sender.fax {
        contact.push_str(&format!("  Fax {fax}"));
    }
    head.push(contact);
    if let Some(web) = &sender.website {
        head.push(web.clone());
    }
    let top = pages.y;
    for line in head {
        pages.y -= 11.0;
        pages.put(MARGIN_LEFT, Face::Regular, 8.5, line);
    }

    // Date and reference, top right.
    let date = spell_letter_date(notice);
    pages.y = top;
    let right =
        |text: &str, size: f32| PAGE_WIDTH - MARGIN_RIGHT - text_width(text, Face::Regular, size);
    pages.put(
        right(&date, BODY_SIZE),
        Face::Regular,
        BODY_SIZE,
        date.clone(),
    );
    let reference = format!("Ref. {}", notice.key);
    pages.y -= 12.0;
    pages.put(
        right(&reference, 8.0),
        Face::Regular,
        8.0,
        reference.clone(),
    );

    // Address block in the envelope window.
    pages.y = ADDRESS_TOP;
    let mut block = Vec::new();
    if let LetterAddress::Fax(_) = to {
        block.push(notice.recipient_name.clone());
    }
    block.extend(to.lines());
    for line in block.iter().take(7) {
        pages.put(MARGIN_LEFT, Face::Regular, BODY_SIZE, line.clone());
        pages.y -= 12.0;
    }

    // Subject.
    pages.y = pages.y.min(SUBJECT_TOP);
    for line in wrap(&notice.subject, Face::Bold, 11.0, TEXT_WIDTH) {
        pages.put(MARGIN_LEFT, Face::Bold, 11.0, line);
        pages.y -= 14.0;
    }
    pages.y -= 10.0;

    // Body.
    for block in &notice.body {
        match block {
            Block::Heading(text) => {
                let lines = wrap(text, Face::Bold, HEADING_SIZE, TEXT_WIDTH);
                // Keep a heading with the first line of what follows.
                pages.ensure(6.0 + BODY_LEADING * (lines.len() as f32 + 1.0));
                pages.y -= 6.0;
                for line in lines {
                    pages.put(MARGIN_LEFT, Face::Bold, HEADING_SIZE, line);
                    pages.y -= BODY_LEADING;
                }
            }
            Block::Paragraph(text) => {
                for line in wrap(text, Face::Regular, BODY_SIZE, TEXT_WIDTH) {
                    pages.ensure(BODY_LEADING);
                    pages.put(MARGIN_LEFT, Face::Regular, BODY_SIZE, line);
                    pages.y -= BODY_LEADING;
                }
                pages.y -= 5.0;
            }
            Block::Bullet(text) => {
                let width = TEXT_WIDTH - BULLET_INDENT;
                for (i, line) in wrap(text, Face::Regular, BODY_SIZE, width)
                    .into_iter()
                    .enumerate()
                {
                    pages.ensure(BODY_LEADING);
                    if i == 0 {
                        pages.put(
                            MARGIN_LEFT + 3.0,
                            Face::Regular,
                            BODY_SIZE,
                            "\u{2022}".into(),
                        );
                    }
                    pages.put(MARGIN_LEFT + BULLET_INDENT, Face::Regular, BODY_SIZE, line);
                    pages.y -= BODY_LEADING;
                }
            }
        }
    }

    // Header on continuation pages, footer on all.
    let total = pages.pages.len();
    let mut rendered = Vec::with_capacity(total);
    for (i, mut page) in pages.pages.into_iter().enumerate() {
        let number = i + 1;
        if number > 1 {
            page.push(Placed {
                x: MARGIN_LEFT,
                y: PAGE_HEIGHT - 40.0,
                face: Face::Regular,
                size: 8.0,
                text: format!("{} \u{2013} {date}", notice.recipient_name),
            });
        }
        let footer = format!("Page {number} of {total}");
        page.push(Placed {
            x: PAGE_WIDTH - MARGIN_RIGHT - text_width(&footer, Face::Regular, 8.0),
            y: FOOTER_Y,
            face: Face::Regular,
            size: 8.0,
            text: footer,
        });
        page.push(Placed {
            x: MARGIN_LEFT,
            y: FOOTER_Y,
            face: Face::Regular,
            size: 8.0,
            text: reference.clone(),
        });
        rendered.push(PdfPage::new(
            Mm::from(Pt(PAGE_WIDTH)),
            Mm::from(Pt(PAGE_HEIGHT)),
            page_ops(&page),
        ));
    }

    let mut doc = PdfDocument::new(&notice.subject);
    let mut warnings = Vec::new();
    let pdf = doc
        .with_pages(rendered)
        .save(&PdfSaveOptions::default(), &mut warnings);
    if !pdf.starts_with(b"%PDF") {
        return Err(LetterError(format!("no PDF produced: {warnings:?}")));
    }
    Ok(Letter { pdf, pages: total })
}

fn page_ops(placed: &[Placed]) -> Vec<Op> {
    let mut ops = Vec::with_capacity(placed.len() * 5);
    for p in placed {
        ops.push(Op::StartTextSection);
        ops.push(Op::SetFont {
            font: PdfFontHandle::Builtin(p.face.builtin()),
            size: Pt(p.size),
        });
        ops.push(Op::SetTextCursor {
            pos: Point {
                x: Pt(p.x),
                y: Pt(p.y),
            },
        });
        ops.push(Op::ShowText {
            items: vec![TextItem::Text(p.text.clone())],
        });
        ops.push(Op::EndTextSection);
    }
    ops
}

/// The letter's date in the language it is written in.
fn spell_letter_date(notice: &RenderedNotice) -> String {
    use chrono::Datelike;
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const ES: [&str; 12] = [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ];
    let d = notice.date;
    let m = d.month0() as usize;
    match notice.template.language.primary() {
        "es" => format!("{} de {} de {}", d.day(), ES[m], d.year()),
        _ => format!("{} {}, {}", EN[m], d.day(), d.year()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_respects_the_width_and_cuts_overlong_words() {
        let text = "The records do not show six weeks of conservative treatment before imaging.";
        let lines = wrap(text, Face::Regular, 10.0, 150.0);
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(text_width(l, Face::Regular, 10.0) <= 150.0, "{l}");
        }
        assert_eq!(lines.join(" "), text);
        let long = "x".repeat(200);
        let lines = wrap(&long, Face::Regular, 10.0, 100.0);
        assert!(lines.len() > 2);
        assert_eq!(lines.concat(), long);
    }

    #[test]
    fn bold_is_wider_than_regular() {
        assert!(text_width("Appeal", Face::Bold, 10.0) > text_width("Appeal", Face::Regular, 10.0));
        assert!(text_width("Appeal", Face::Regular, 10.0) > 20.0);
    }

    #[test]
    fn foreign_addresses_end_with_the_country() {
        let address: Address = serde_json::from_value(serde_json::json!({
            "lines": ["Villa 12, Street 4"], "city": "Dubai", "country": "AE"
        }))
        .unwrap();
        let lines = LetterAddress::Postal {
            name: "Omar Haddad".into(),
            address,
        }
        .lines();
        assert_eq!(
            lines,
            [
                "Omar Haddad",
                "Villa 12, Street 4",
                "Dubai",
                "UNITED ARAB EMIRATES"
            ]
        );
    }
}
