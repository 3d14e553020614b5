//! Letter and message templates as data: loading with validation, and rendering a
//! planned notice into its final words with minijinja.
//!
//! A template folder holds `catalog.toml` (the plan as sender, and one entry per
//! template version) and one folder per version, `<id>/v<version>/`, with:
//!
//! - `text.<lang>.j2`: required for every declared language; defines the blocks
//!   `subject` and `body`, used on every channel;
//! - `<channel>.<lang>.j2`: optional, replaces `text` on that channel
//!   (`mail.es.j2`);
//! - `html.<lang>.j2`: optional HTML alternative for email (auto-escaped).
//!
//! **Required parts.** A template entry declares a `profile`; each profile names the
//! parts its notices must state (an adverse determination must state the reason, the
//! plan provision, the criterion, how to appeal, ...: see [`Profile`]). A template
//! marks where it states a part with `{{ part("reason") }}` at the start of that
//! passage. Loading fails, naming the file and the part, when a file lacks a
//! required marker; rendering fails when a required marker was not reached (hidden
//! by a condition), so a notice missing a part never leaves. Markers render as
//! nothing. Missing data fails too: undefined values may be tested (`{% if x %}`)
//! but not printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use carepath_core::{ContactChannel, LanguageTag};
use chrono::{DateTime, Datelike, NaiveDate};
use minijinja::value::Value as JinjaValue;
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use serde::Deserialize;

use crate::notice::{PlannedNotice, RenderedNotice, Sender, TemplateUsed, parse_blocks};
use crate::rules::NoticeRules;

/// Marks the start and end of a part marker in rendered text; private-use code points
/// that no template or payload text contains.
const PART_OPEN: char = '\u{E000}';
const PART_CLOSE: char = '\u{E001}';

/// Event kinds whose notices are adverse determinations: their rules must use
/// templates with the [`Profile::AdverseDetermination`] profile, whatever the data
/// files say, because the law requires their content.
pub const ADVERSE_EVENT_KINDS: &[&str] =
    &["precert.case.denied", "precert.case.partially_approved"];

/// What a template is for, and so which parts it must state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Any notice: at least the number to call.
    General,
    /// A request for more information: what is needed and by when.
    InformationRequest,
    /// A denial or partial approval (29 CFR 2560.503-1(g), CMS-0057-F): the service
    /// and date, the specific reason, the plan provision, the criterion (or that a copy
    /// is free), what would change the decision, the peer-to-peer offer, how and by
    /// when to appeal (expedited appeals decided within 72 hours), external review and
    /// the right to sue, and the number to call.
    AdverseDetermination,
    /// A final internal decision upholding a denial on appeal: the service, the
    /// reason, the provision and criterion, external review and the right to sue.
    FinalAdverseDetermination,
}

impl Profile {
    /// The parts a template with this profile must state.
    pub fn required_parts(self) -> &'static [&'static str] {
        match self {
            Profile::General => &["phone"],
            Profile::InformationRequest => &["requested_information", "due_date", "phone"],
            Profile::AdverseDetermination => &[
                "service",
                "reason",
                "plan_provision",
                "criterion",
                "additional_information",
                "peer_to_peer",
                "appeal",
                "external_review",
                "phone",
            ],
            Profile::FinalAdverseDetermination => &[
                "service",
                "reason",
                "plan_provision",
                "criterion",
                "external_review",
                "phone",
            ],
        }
    }
}

/// Every part name a template may mark; a marker with another name is a typo.
pub const KNOWN_PARTS: &[&str] = &[
    "service",
    "reason",
    "plan_provision",
    "criterion",
    "additional_information",
    "peer_to_peer",
    "appeal",
    "external_review",
    "phone",
    "requested_information",
    "due_date",
];

/// A problem with the template folder, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct TemplateError {
    /// Path relative to the templates folder (`precert-denied/v1/text.es.j2`).
    pub file: String,
    pub problem: TemplateProblem,
}

/// What is wrong with a template file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateProblem {
    #[error("does not state the required part {part:?} (mark it with {{{{ part(\"{part}\") }}}})")]
    MissingPart { part: String },
    #[error("marks unknown part {part:?}")]
    UnknownPart { part: String },
    #[error("does not define the block {block:?}")]
    MissingBlock { block: String },
    #[error("is missing")]
    MissingFile,
    #[error("is not declared in catalog.toml")]
    Undeclared,
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Catalog(String),
}

/// Every problem found while loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TemplateErrors(pub Vec<TemplateError>);

/// Why a notice could not be rendered. Not retryable: the data or the template needs
/// fixing, so the notice should be marked failed where staff see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{template}: {problem}")]
pub struct RenderError {
    /// The template id, or the file when one was chosen.
    pub template: String,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    default_language: String,
    sender: Sender,
    #[serde(default)]
    template: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: String,
    version: u32,
    effective_from: NaiveDate,
    profile: Profile,
    languages: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone)]
struct TemplateVersion {
    version: u32,
    effective_from: NaiveDate,
    profile: Profile,
    languages: Vec<LanguageTag>,
    /// Registered file names (relative paths).
    files: BTreeSet<String>,
}

/// Every template, loaded and validated, ready to render.
#[derive(Debug)]
pub struct TemplateCatalog {
    sender: Sender,
    default_language: LanguageTag,
    /// Versions per id, oldest `effective_from` first.
    templates: BTreeMap<String, Vec<TemplateVersion>>,
    env: Environment<'static>,
}

/// The shipped template folder, embedded so a server starts without a path.
pub const SHIPPED_TEMPLATES: &[(&str, &str)] = &crate::shipped::TEMPLATES;

impl TemplateCatalog {
    /// The templates shipped in `data/notify/templates`.
    pub fn shipped() -> Result<Self, TemplateErrors> {
        Self::from_files(
            SHIPPED_TEMPLATES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string())),
        )
    }

    /// Loads a template folder from disk (every file under it, recursively).
    pub fn load_dir(root: &Path) -> Result<Self, TemplateErrors> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        let io_error = |path: &Path, e: std::io::Error| {
            TemplateErrors(vec![TemplateError {
                file: path.display().to_string(),
                problem: TemplateProblem::Catalog(e.to_string()),
            }])
        };
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
            for entry in entries {
                let path = entry.map_err(|e| io_error(&dir, e))?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((rel, text));
            }
        }
        Self::from_files(files)
    }

    /// Builds the catalog from `(relative path, text)` pairs: `catalog.toml` and the
    /// template files. Reports every problem at once.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, TemplateErrors> {
        let mut files: BTreeMap<String, String> = files.into_iter().collect();
        let err = |file: &str, problem| TemplateError {
            file: file.to_owned(),
            problem,
        };
        let Some(catalog_text) = files.remove("catalog.toml") else {
            return Err(TemplateErrors(vec![err(
                "catalog.toml",
                TemplateProblem::MissingFile,
            )]));
        };
        files.retain(|name, _| !name.ends_with(".md"));
        let raw: RawCatalog = toml::from_str(&catalog_text).map_err(|e| {
            TemplateErrors(vec![err(
                "catalog.toml",
                TemplateProblem::Catalog(e.message().to_owned()),
            )])
        })?;
        let mut errors = Vec::new();
        let catalog_problem = |errors: &mut Vec<TemplateError>, p: String| {
            errors.push(err("catalog.toml", TemplateProblem::Catalog(p)));
        };
        let default_language = LanguageTag::parse(&raw.default_language)
            .map_err(|e| catalog_problem(&mut errors, format!("default_language: {e}")))
            .ok();

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        match minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            Ok(syntax) => env.set_syntax(syntax),
            Err(e) => catalog_problem(&mut errors, format!("template syntax set-up: {e}")),
        }
        env.set_auto_escape_callback(|name| {
            if name
                .rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with("html."))
            {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_function("part", part);
        env.add_filter("longdate", longdate);
        env.add_filter("longdatetime", longdatetime);

        let mut templates: BTreeMap<String, Vec<TemplateVersion>> = BTreeMap::new();
        let mut claimed = BTreeSet::new();
        for entry in raw.template {
            let at = format!("template {} v{}", entry.id, entry.version);
            if entry
                .description
                .as_deref()
                .is_some_and(|d| d.trim().is_empty())
            {
                catalog_problem(&mut errors, format!("{at}: description must not be empty"));
            }
            let mut languages = Vec::new();
            for l in &entry.languages {
                match LanguageTag::parse(l) {
                    Ok(l) => languages.push(l),
                    Err(e) => catalog_problem(&mut errors, format!("{at}: languages: {e}")),
                }
            }
            if let Some(default) = &default_language
                && !languages.contains(default)
            {
                catalog_problem(
                    &mut errors,
                    format!("{at}: must have the default language {default}"),
                );
            }
            let versions = templates.entry(entry.id.clone()).or_default();
            if versions.iter().any(|v| v.version == entry.version) {
                catalog_problem(&mut errors, format!("{at}: declared twice"));
                continue;
            }
            let prefix = format!("{}/v{}/", entry.id, entry.version);
            let mut registered = BTreeSet::new();
            for language in &languages {
                let text_name = format!("{prefix}text.{language}.j2");
                if !files.contains_key(&text_name) {
                    errors.push(err(&text_name, TemplateProblem::MissingFile));
                }
            }
            for (name, source) in files.range(prefix.clone()..) {
                let Some(file) = name.strip_prefix(&prefix) else {
                    break;
                };
                let Some((kind, language)) = parse_file_name(file) else {
                    continue;
                };
                if !languages.iter().any(|l| l.as_str() == language) {
                    continue;
                }
                claimed.insert(name.clone());
                errors.extend(check_source(name, source, kind, entry.profile));
                match env.add_template_owned(name.clone(), source.clone()) {
                    Ok(()) => {
                        registered.insert(name.clone());
                    }
                    Err(e) => errors.push(err(name, TemplateProblem::Syntax(describe(&e)))),
                }
            }
            versions.push(TemplateVersion {
                version: entry.version,
                effective_from: entry.effective_from,
                profile: entry.profile,
                languages,
                files: registered,
            });
        }
        for name in files.keys() {
            if !claimed.contains(name) {
                errors.push(err(name, TemplateProblem::Undeclared));
            }
        }
        for versions in templates.values_mut() {
            versions.sort_by_key(|v| v.effective_from);
            for pair in versions.windows(2) {
                if pair[0].effective_from == pair[1].effective_from {
                    catalog_problem(
                        &mut errors,
                        format!(
                            "versions {} and {} take effect on the same day",
                            pair[0].version, pair[1].version
                        ),
                    );
                }
            }
        }
        match default_language {
            Some(default_language) if errors.is_empty() => Ok(Self {
                sender: raw.sender,
                default_language,
                templates,
                env,
            }),
            _ => Err(TemplateErrors(errors)),
        }
    }

    /// The plan as sender, as the catalog declares it.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// Checks that every template the rules use exists, and that notices the law
    /// defines (see [`ADVERSE_EVENT_KINDS`]) use an adverse-determination template.
    pub fn check_rules(&self, rules: &NoticeRules) -> Result<(), TemplateErrors> {
        let mut errors = Vec::new();
        for rule in &rules.rules {
            let problem = match self.templates.get(&rule.template) {
                None => Some(format!(
                    "rule {} uses unknown template {}",
                    rule.id, rule.template
                )),
                Some(versions)
                    if ADVERSE_EVENT_KINDS.contains(&rule.event.as_str())
                        && versions
                            .iter()
                            .any(|v| v.profile != Profile::AdverseDetermination) =>
                {
                    Some(format!(
                        "rule {} sends {} notices with template {}, whose profile is not adverse_determination",
                        rule.id, rule.event, rule.template
                    ))
                }
                Some(_) => None,
            };
            if let Some(p) = problem {
                errors.push(TemplateError {
                    file: "rules".into(),
                    problem: TemplateProblem::Catalog(p),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TemplateErrors(errors))
        }
    }

    /// Renders `notice`, dated `date`, with the template version in effect on the
    /// event's date, in the recipient's language (or its primary language, or the
    /// catalog's default).
    pub fn render(
        &self,
        notice: &PlannedNotice,
        date: NaiveDate,
    ) -> Result<RenderedNotice, RenderError> {
        let fail = |template: &str, problem: String| RenderError {
            template: template.to_owned(),
            problem,
        };
        let versions = self
            .templates
            .get(&notice.template)
            .ok_or_else(|| fail(&notice.template, "no such template".into()))?;
        let version = versions
            .iter()
            .rev()
            .find(|v| v.effective_from <= notice.event_date)
            .ok_or_else(|| {
                fail(
                    &notice.template,
                    format!("no version in effect on {}", notice.event_date),
                )
            })?;
        let language = pick_language(&version.languages, &notice.language, &self.default_language);
        let prefix = format!("{}/v{}/", notice.template, version.version);
        let specific = format!("{prefix}{}.{language}.j2", notice.channel.as_str());
        let file = if version.files.contains(&specific) {
            specific
        } else {
            format!("{prefix}text.{language}.j2")
        };
        let required = version.profile.required_parts();

        // The notice's context with `plan` and `notice` added (they win over keys of
        // the same name), merged as it is read rather than copied.
        let ctx = minijinja::context! {
            plan => JinjaValue::from(minijinja::value::Serde(&self.sender)),
            notice => minijinja::context! {
                date => date.to_string(),
                reference => notice.key.as_str(),
                language => language.as_str(),
            },
            ..JinjaValue::from(minijinja::value::Serde(&notice.context))
        };

        let template = self
            .env
            .get_template(&file)
            .map_err(|e| fail(&file, describe(&e)))?;
        let mut captured = template
            .render_captured(ctx.clone())
            .map_err(|e| fail(&file, describe(&e)))?;
        let (subject, body) = captured
            .with_state_mut(|state| {
                Ok::<_, minijinja::Error>((
                    state.render_block("subject")?,
                    state.render_block("body")?,
                ))
            })
            .map_err(|e| fail(&file, describe(&e)))?;
        let mut seen = BTreeSet::new();
        let subject = take_parts(&subject, &mut seen);
        let body = take_parts(&body, &mut seen);
        check_parts_rendered(&file, required, &seen)?;

        let html_name = format!("{prefix}html.{language}.j2");
        let html = if notice.channel == ContactChannel::Email && version.files.contains(&html_name)
        {
            let html = self
                .env
                .get_template(&html_name)
                .and_then(|t| t.render(ctx))
                .map_err(|e| fail(&html_name, describe(&e)))?;
            let mut seen = BTreeSet::new();
            let html = take_parts(&html, &mut seen);
            check_parts_rendered(&html_name, required, &seen)?;
            Some(html)
        } else {
            None
        };

        Ok(RenderedNotice {
            key: notice.key.clone(),
            channel: notice.channel,
            destination: notice.destination.clone(),
            recipient_name: notice.recipient.name.clone(),
            template: TemplateUsed {
                id: notice.template.clone(),
                version: version.version,
                language,
                file,
            },
            date,
            sender: self.sender.clone(),
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            body: parse_blocks(&body),
            html,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// `text` or a channel override: must define `subject` and `body`.
    Text,
    Html,
}

/// `text.en.j2` → (Text, "en"); `mail.es.j2` → (Text, "es"); `html.en.j2` → (Html,
/// "en"); anything else is not a template file.
fn parse_file_name(file: &str) -> Option<(FileKind, &str)> {
    let stem = file.strip_suffix(".j2")?;
    let (kind, language) = stem.split_once('.')?;
    let kind = match kind {
        "html" => FileKind::Html,
        "text" => FileKind::Text,
        other if ContactChannel::parse(other).is_ok() => FileKind::Text,
        _ => return None,
    };
    Some((kind, language))
}

/// Static checks of one file: the blocks it must define, and the part markers.
fn check_source(name: &str, source: &str, kind: FileKind, profile: Profile) -> Vec<TemplateError> {
    let mut errors = Vec::new();
    let mut push = |problem| {
        errors.push(TemplateError {
            file: name.to_owned(),
            problem,
        })
    };
    if kind == FileKind::Text {
        let blocks = declared_blocks(source);
        for block in ["subject", "body"] {
            if !blocks.contains(block) {
                push(TemplateProblem::MissingBlock {
                    block: block.into(),
                });
            }
        }
    }
    let marked = marked_parts(source);
    for part in &marked {
        if !KNOWN_PARTS.contains(&part.as_str()) {
            push(TemplateProblem::UnknownPart { part: part.clone() });
        }
    }
    for part in profile.required_parts() {
        if !marked.contains(*part) {
            push(TemplateProblem::MissingPart {
                part: (*part).to_owned(),
            });
        }
    }
    errors
}

/// Names of `{% block name %}` tags (with any whitespace control).
fn declared_blocks(source: &str) -> BTreeSet<String> {
    let mut blocks = BTreeSet::new();
    for piece in source.split("{%").skip(1) {
        let tag = piece.trim_start_matches(['-', '+']).trim_start();
        if let Some(rest) = tag.strip_prefix("block") {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                blocks.insert(name);
            }
        }
    }
    blocks
}

/// Names in `part("name")` / `part('name')` calls.
fn marked_parts(source: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    for piece in source.split("part(").skip(1) {
        let piece = piece.trim_start();
        let Some(quote) = piece.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(end) = piece[1..].find(quote) {
            parts.insert(piece[1..1 + end].to_owned());
        }
    }
    parts
}

/// Removes part markers from rendered text, recording which parts were reached.
fn take_parts(text: &str, seen: &mut BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(PART_OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + PART_OPEN.len_utf8()..];
        match after.find(PART_CLOSE) {
            Some(end) => {
                seen.insert(after[..end].to_owned());
                rest = &after[end + PART_CLOSE.len_utf8()..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn check_parts_rendered(
    file: &str,
    required: &[&str],
    seen: &BTreeSet<String>,
) -> Result<(), RenderError> {
    let missing: Vec<_> = required.iter().filter(|p| !seen.contains(**p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RenderError {
        template: file.to_owned(),
        problem: format!(
            "required parts not stated with this data: {}",
            missing
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

fn pick_language(
    available: &[LanguageTag],
    wanted: &LanguageTag,
    default: &LanguageTag,
) -> LanguageTag {
    available
        .iter()
        .find(|l| *l == wanted)
        .or_else(|| available.iter().find(|l| l.as_str() == wanted.primary()))
        .or_else(|| available.iter().find(|l| l.primary() == wanted.primary()))
        .unwrap_or(default)
        .clone()
}

/// minijinja's error with its template line, in one line.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match e.line() {
        Some(line) => format!("line {line}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

/// `{{ part("reason") }}`: marks where a required part is stated; renders as a
/// marker the renderer strips.
fn part(name: String) -> Result<JinjaValue, minijinja::Error> {
    if !KNOWN_PARTS.contains(&name.as_str()) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("unknown part {name:?}"),
        ));
    }
    Ok(JinjaValue::from_safe_string(format!(
        "{PART_OPEN}{name}{PART_CLOSE}"
    )))
}

const MONTHS_EN: [&str; 12] = [
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
const MONTHS_ES: [&str; 12] = [
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

fn notice_language(state: &State) -> String {
    state
        .lookup("notice")
        .and_then(|n| n.get_attr("language").ok())
        .and_then(|l| l.as_str().map(str::to_owned))
        .unwrap_or_else(|| "en".into())
}

fn spell_date(date: NaiveDate, language: &str) -> String {
    let month = date.month0() as usize;
    match language.split('-').next() {
        Some("es") => format!("{} de {} de {}", date.day(), MONTHS_ES[month], date.year()),
        Some("en") => format!("{} {}, {}", MONTHS_EN[month], date.day(), date.year()),
        _ => date.to_string(),
    }
}

/// `{{ "2026-12-03" | longdate }}`: a date spelled out in the notice's language
/// ("December 3, 2026", "3 de diciembre de 2026").
fn longdate(state: &State, value: String) -> Result<String, minijinja::Error> {
    let date = NaiveDate::parse_from_str(&value, "%Y-%m-%d")
        .or_else(|_| DateTime::parse_from_rfc3339(&value).map(|d| d.date_naive()))
        .map_err(|_| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("longdate: {value:?} is not a date (YYYY-MM-DD)"),
            )
        })?;
    Ok(spell_date(date, &notice_language(state)))
}

/// `{{ scheduled_at | longdatetime }}`: an RFC 3339 time spelled out with its UTC
/// offset, so the reader knows which time zone is meant.
fn longdatetime(state: &State, value: String) -> Result<String, minijinja::Error> {
    let at = DateTime::parse_from_rfc3339(&value).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("longdatetime: {value:?} is not an RFC 3339 time"),
        )
    })?;
    let language = notice_language(state);
    let offset = at.format("%:z").to_string();
    let zone = if offset == "+00:00" {
        "UTC".to_owned()
    } else {
        format!("UTC{offset}")
    };
    let word = if language.starts_with("es") {
        "a las"
    } else {
        "at"
    };
    Ok(format!(
        "{} {word} {} ({zone})",
        spell_date(at.date_naive(), &language),
        at.format("%H:%M")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{NoticeRules, plan_notices};
    use carepath_core::{DirectoryBundle, DomainEvent};

    /// What every denial must say, in each language (beyond the payload's own text).
    fn denial_phrases(lang: &str) -> Vec<&'static str> {
        let mut common = vec![
            "MRI brain without and with contrast",
            "December 3, 2026",
            "six weeks of treatment",
            "section 4.2",
            "IMG-HEAD-07",
            "1-800-555-0142",
            "1-800-555-0144",
            "72",
            "502(a)",
        ];
        if lang == "es" {
            common[1] = "3 de diciembre de 2026";
            common.extend([
                "copia gratuita",
                "apelación acelerada",
                "revisión externa",
                "demanda civil",
                "24 de mayo de 2027",
            ]);
        } else {
            common.extend([
                "free of charge",
                "expedited appeal",
                "external review",
                "civil action",
                "May 24, 2027",
                "peer-to-peer",
            ]);
        }
        common
    }

    fn shipped_files() -> BTreeMap<String, String> {
        SHIPPED_TEMPLATES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn shipped_templates_load_and_cover_the_rules() {
        let catalog = TemplateCatalog::shipped().unwrap_or_else(|e| panic!("{e}"));
        catalog
            .check_rules(&NoticeRules::shipped().unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_embedded_list_matches_the_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/notify/templates");
        let mut on_disk = BTreeSet::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.insert(
                        p.strip_prefix(&dir)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        let embedded: BTreeSet<_> = SHIPPED_TEMPLATES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(
            embedded, on_disk,
            "update src/shipped.rs to match data/notify/templates"
        );
        TemplateCatalog::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_denial_template_without_a_required_part_fails_to_load_naming_file_and_part() {
        let mut files = shipped_files();
        let name = "precert-denied/v1/text.es.j2".to_string();
        let text = files[&name].replace("{{ part(\"external_review\") }}", "");
        files.insert(name.clone(), text);
        let err = TemplateCatalog::from_files(files).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].file, name);
        assert_eq!(
            err.0[0].problem,
            TemplateProblem::MissingPart {
                part: "external_review".into()
            }
        );
        assert!(
            err.to_string().contains("precert-denied/v1/text.es.j2"),
            "{err}"
        );
    }

    #[test]
    fn load_reports_missing_files_blocks_unknown_parts_and_strays() {
        let mut files = shipped_files();
        files.remove("precert-approved/v1/text.es.j2");
        files.insert(
            "precert-withdrawn/v1/text.en.j2".into(),
            "{% block body %}{{ part(\"phone\") }}{{ part(\"reasn\") }}{% endblock %}".into(),
        );
        files.insert("stray/v1/text.en.j2".into(), "x".into());
        let err = TemplateCatalog::from_files(files).unwrap_err();
        let got: Vec<_> = err
            .0
            .iter()
            .map(|e| (e.file.as_str(), e.problem.clone()))
            .collect();
        assert!(
            got.contains(&(
                "precert-approved/v1/text.es.j2",
                TemplateProblem::MissingFile
            )),
            "{err}"
        );
        assert!(
            got.contains(&(
                "precert-withdrawn/v1/text.en.j2",
                TemplateProblem::MissingBlock {
                    block: "subject".into()
                }
            )),
            "{err}"
        );
        assert!(
            got.contains(&(
                "precert-withdrawn/v1/text.en.j2",
                TemplateProblem::UnknownPart {
                    part: "reasn".into()
                }
            )),
            "{err}"
        );
        assert!(
            got.contains(&("stray/v1/text.en.j2", TemplateProblem::Undeclared)),
            "{err}"
        );
    }

    #[test]
    fn rules_must_use_adverse_templates_for_denials() {
        let catalog = TemplateCatalog::shipped().unwrap();
        let text = crate::rules::SHIPPED_RULES.replace(
            "template = \"precert-denied\"\npriority",
            "template = \"precert-withdrawn\"\npriority",
        );
        let rules = NoticeRules::from_toml("rules.toml", &text).unwrap();
        let err = catalog.check_rules(&rules).unwrap_err();
        assert!(
            err.to_string().contains("rule precert-denied-requesting"),
            "{err}"
        );
    }

    fn denial_event(
        member: &carepath_core::Member,
        provider: &carepath_core::Provider,
    ) -> DomainEvent {
        DomainEvent {
            id: "evt-1".into(),
            kind: "precert.case.denied".into(),
            aggregate_kind: "precert_case".into(),
            aggregate_id: "PC-1".into(),
            member_id: Some(member.id.clone()),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-25T15:00:00Z")
                .unwrap()
                .to_utc(),
            payload: crate::examples::denial_payload(provider),
        }
    }

    #[test]
    fn denials_render_every_required_part_in_english_and_spanish() {
        let catalog = TemplateCatalog::shipped().unwrap();
        let rules = NoticeRules::shipped().unwrap();
        let dir = DirectoryBundle::demo().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        for lang in ["en", "es"] {
            let member = dir
                .members
                .iter()
                .find(|m| m.language.as_str() == lang)
                .unwrap();
            let e = denial_event(member, &dir.providers[0]);
            let plan = plan_notices(&rules, &e, &dir).unwrap();
            let to_member = plan
                .notices
                .iter()
                .find(|n| n.channel == ContactChannel::Mail)
                .unwrap();
            let rendered = catalog
                .render(to_member, date)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rendered.template.language.as_str(), lang);
            let text = rendered.text_body();
            for expected in denial_phrases(lang) {
                assert!(
                    text.contains(expected),
                    "{lang}: missing {expected:?} in\n{text}"
                );
            }
            assert!(!text.contains(PART_OPEN), "{text}");
        }
    }

    #[test]
    fn missing_data_fails_rendering_instead_of_printing_blanks() {
        let catalog = TemplateCatalog::shipped().unwrap();
        let rules = NoticeRules::shipped().unwrap();
        let dir = DirectoryBundle::demo().unwrap();
        let mut e = denial_event(&dir.members[0], &dir.providers[0]);
        e.payload.as_object_mut().unwrap().remove("reason");
        let plan = plan_notices(&rules, &e, &dir).unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let err = catalog.render(&plan.notices[0], date).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn a_part_hidden_by_a_condition_stops_the_notice() {
        let mut files = shipped_files();
        let name = "precert-denied/v1/text.en.j2".to_string();
        let text = files[&name].replace(
            "{{ part(\"peer_to_peer\") }}",
            "{% if never_set %}{{ part(\"peer_to_peer\") }}{% endif %}",
        );
        files.insert(name, text);
        let catalog = TemplateCatalog::from_files(files).unwrap();
        let dir = DirectoryBundle::demo().unwrap();
        let rules = NoticeRules::shipped().unwrap();
        let member = dir
            .members
            .iter()
            .find(|m| m.language.as_str() == "en")
            .unwrap();
        let plan = plan_notices(&rules, &denial_event(member, &dir.providers[0]), &dir).unwrap();
        let err = catalog
            .render(
                &plan.notices[1],
                NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            )
            .unwrap_err();
        assert!(err.problem.contains("peer_to_peer"), "{err}");
    }

    #[test]
    fn languages_fall_back_by_primary_then_default() {
        let en = LanguageTag::parse("en").unwrap();
        let es = LanguageTag::parse("es").unwrap();
        let avail = [en.clone(), es.clone()];
        assert_eq!(
            pick_language(&avail, &LanguageTag::parse("es-419").unwrap(), &en),
            es
        );
        assert_eq!(
            pick_language(&avail, &LanguageTag::parse("ar").unwrap(), &en),
            en
        );
    }

    #[test]
    fn dates_are_spelled_in_the_notice_language() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(spell_date(d, "en"), "December 3, 2026");
        assert_eq!(spell_date(d, "es-419"), "3 de diciembre de 2026");
        assert_eq!(spell_date(d, "fr"), "2026-12-03");
    }

    #[test]
    fn every_template_renders_for_every_rule_with_sample_payloads() {
        let catalog = TemplateCatalog::shipped().unwrap();
        let rules = NoticeRules::shipped().unwrap();
        let dir = DirectoryBundle::demo().unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let mut rendered_templates = BTreeSet::new();
        for event in crate::examples::sample_events(&dir) {
            let plan = plan_notices(&rules, &event, &dir).unwrap_or_else(|e| panic!("{e}"));
            assert!(!plan.notices.is_empty(), "{} planned nothing", event.kind);
            for notice in &plan.notices {
                let r = catalog
                    .render(notice, date)
                    .unwrap_or_else(|e| panic!("{}: {e}", event.kind));
                assert!(!r.subject.is_empty());
                assert!(
                    r.text_body().contains(&catalog.sender().phone),
                    "{}",
                    r.text_body()
                );
                rendered_templates.insert(r.template.id.clone());
            }
        }
        let used: BTreeSet<_> = rules.rules.iter().map(|r| r.template.clone()).collect();
        assert_eq!(rendered_templates, used);
    }
}
