//! The reference data a server runs with: the business calendar, notice rules and
//! templates, the oncology pathway catalogue and the second-opinion catalogue. The
//! shipped files are compiled in; a plan's data directory (`--data-dir`) overrides
//! them at start, each checked by the same loader as the shipped one, so a plan
//! changes them without a rebuild and a bad file stops the start, named.
//!
//! The directory mirrors the repository's `data/`; each part present replaces the
//! shipped one whole, a part absent keeps it:
//!
//! | part | in the data directory |
//! |---|---|
//! | business calendar | `calendars/`, holding one `*.toml` calendar |
//! | notice rules | `notify/rules.toml` |
//! | notice templates | `notify/templates/` (checked against the rules in force) |
//! | oncology pathways | `oncology/`, every `*.toml` in it |
//! | second-opinion catalogue | `secondopinion/` with `groups.toml`, `questionnaires.toml`, `records.toml` |

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use carepath_core::BusinessCalendar;
use carepath_notify::{NoticeRules, TemplateCatalog};

/// The reference data in force.
#[derive(Debug, Clone)]
pub struct ReferenceData {
    pub calendar: Arc<BusinessCalendar>,
    pub notice_rules: Arc<NoticeRules>,
    pub templates: Arc<TemplateCatalog>,
    pub oncology: Arc<carepath_oncology::Catalogue>,
    pub secondopinion: Arc<carepath_secondopinion::Catalogue>,
}

/// Why a data directory was refused: the file or folder, and every problem its
/// loader found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data directory: {path}: {problem}")]
pub struct DataError {
    pub path: PathBuf,
    pub problem: String,
}

static CONFIGURED: OnceLock<ReferenceData> = OnceLock::new();

/// Sets the reference data of this process (the `--data-dir` setting), before any
/// application is built. The first setting wins.
pub fn configure(data: ReferenceData) {
    if CONFIGURED.set(data).is_err() {
        tracing::warn!("reference data already set; keeping the first");
    }
}

/// The data set by [`configure`], else the shipped data.
pub fn current() -> ReferenceData {
    CONFIGURED
        .get()
        .cloned()
        .unwrap_or_else(ReferenceData::shipped)
}

impl ReferenceData {
    /// The data compiled in from the repository's `data/`.
    pub fn shipped() -> Self {
        // Each shipped part is checked by its crate's tests: failing here means a
        // build from data that never passed them.
        ReferenceData {
            calendar: Arc::new(BusinessCalendar::us_federal()),
            notice_rules: Arc::new(
                NoticeRules::shipped().unwrap_or_else(|e| panic!("shipped notice rules: {e}")),
            ),
            templates: Arc::new(
                TemplateCatalog::shipped()
                    .unwrap_or_else(|e| panic!("shipped notice templates: {e}")),
            ),
            oncology: Arc::new(carepath_oncology::Catalogue::shipped()),
            secondopinion: Arc::new(carepath_secondopinion::shipped()),
        }
    }

    /// The shipped data with the parts `dir` holds replaced by its files.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        if !dir.is_dir() {
            return Err(error(dir, "is not a folder"));
        }
        let mut data = Self::shipped();

        let calendars = dir.join("calendars");
        if calendars.is_dir() {
            let files = toml_files(&calendars)?;
            let [file] = files.as_slice() else {
                return Err(error(
                    &calendars,
                    format!("holds {} calendar files; keep exactly one", files.len()),
                ));
            };
            let text = read(file)?;
            let calendar = BusinessCalendar::from_toml(&file.display().to_string(), &text)
                .map_err(|e| error(file, e))?;
            data.calendar = Arc::new(calendar);
        }

        let rules = dir.join("notify").join("rules.toml");
        if rules.is_file() {
            let text = read(&rules)?;
            let loaded = NoticeRules::from_toml(&rules.display().to_string(), &text)
                .map_err(|e| error(&rules, e))?;
            data.notice_rules = Arc::new(loaded);
        }
        let templates = dir.join("notify").join("templates");
        if templates.is_dir() {
            let loaded = TemplateCatalog::load_dir(&templates).map_err(|e| error(&templates, e))?;
            data.templates = Arc::new(loaded);
        }
        data.templates
            .check_rules(&data.notice_rules)
            .map_err(|e| error(&dir.join("notify"), e))?;

        let oncology = dir.join("oncology");
        if oncology.is_dir() {
            let files = toml_files(&oncology)?;
            let texts = files
                .iter()
                .map(|f| Ok((f.display().to_string(), read(f)?)))
                .collect::<Result<Vec<_>, DataError>>()?;
            let named: Vec<(&str, &str)> = texts
                .iter()
                .map(|(n, t)| (n.as_str(), t.as_str()))
                .collect();
            let catalogue = carepath_oncology::Catalogue::from_toml_files(&named)
                .map_err(|e| error(&oncology, e))?;
            data.oncology = Arc::new(catalogue);
        }

        let opinions = dir.join("secondopinion");
        if opinions.is_dir() {
            let [groups, questionnaires, records] = carepath_secondopinion::FILES.map(|name| {
                let path = opinions.join(name);
                read(&path).map(|text| (path.display().to_string(), text))
            });
            let (groups, questionnaires, records) = (groups?, questionnaires?, records?);
            let catalogue = carepath_secondopinion::Catalogue::load(
                (&groups.0, &groups.1),
                (&questionnaires.0, &questionnaires.1),
                (&records.0, &records.1),
            )
            .map_err(|e| error(&opinions, e))?;
            data.secondopinion = Arc::new(catalogue);
        }
        Ok(data)
    }
}

fn error(path: &Path, problem: impl std::fmt::Display) -> DataError {
    DataError {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| error(path, e))
}

/// The `*.toml` files directly in `dir`, by name.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| error(dir, e))? {
        let path = entry.map_err(|e| error(dir, e))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's own `data/`, which a plan copies to start from.
    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
    }

    /// Copies the shipped files of `part` (a folder of `data/`) into `dir`.
    fn copy_part(dir: &Path, part: &str) {
        let mut pending = vec![PathBuf::from(part)];
        while let Some(rel) = pending.pop() {
            let from = shipped_dir().join(&rel);
            if from.is_dir() {
                std::fs::create_dir_all(dir.join(&rel)).unwrap();
                for entry in std::fs::read_dir(&from).unwrap() {
                    pending.push(rel.join(entry.unwrap().file_name()));
                }
            } else {
                std::fs::copy(&from, dir.join(&rel)).unwrap();
            }
        }
    }

    #[test]
    fn an_empty_folder_keeps_the_shipped_data() {
        let dir = tempfile::tempdir().unwrap();
        let data = ReferenceData::load(dir.path()).unwrap();
        assert_eq!(data.calendar.id(), "us-federal");
        let missing = ReferenceData::load(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.problem, "is not a folder");
    }

    #[test]
    fn copies_of_the_shipped_files_load_as_the_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        for part in ["calendars", "notify", "oncology", "secondopinion"] {
            copy_part(dir.path(), part);
        }
        // READMEs beside the data are not data.
        ReferenceData::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_plan_calendar_replaces_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("calendars")).unwrap();
        std::fs::write(
            dir.path().join("calendars/plan.toml"),
            r#"
            id = "plan-2026"
            name = "Plan calendar"
            timezone = "America/Chicago"
            business_day_start = "08:00"
            business_day_end = "17:00"
            rule = "us-federal"
            [[holidays]]
            date = 2026-11-27
            name = "Day after Thanksgiving"
            "#,
        )
        .unwrap();
        let data = ReferenceData::load(dir.path()).unwrap();
        assert_eq!(data.calendar.id(), "plan-2026");
        let friday = "2026-11-27".parse().unwrap();
        assert_eq!(
            data.calendar.holiday(friday),
            Some("Day after Thanksgiving")
        );

        // Two calendars: which one is meant is not guessed.
        std::fs::write(dir.path().join("calendars/other.toml"), "id = \"x\"").unwrap();
        let err = ReferenceData::load(dir.path()).unwrap_err();
        assert_eq!(err.problem, "holds 2 calendar files; keep exactly one");
        // A broken calendar is named with the loader's own message.
        std::fs::remove_file(dir.path().join("calendars/plan.toml")).unwrap();
        let err = ReferenceData::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("calendars/other.toml"), "{err}");
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn bad_files_stop_the_load_and_are_named() {
        let dir = tempfile::tempdir().unwrap();
        copy_part(dir.path(), "oncology");
        let drugs = dir.path().join("oncology/drugs.toml");
        let text = std::fs::read_to_string(&drugs).unwrap();
        std::fs::write(&drugs, format!("{text}\n[[nonsense]]\nx = 1\n")).unwrap();
        let err = ReferenceData::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("drugs.toml"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        copy_part(dir.path(), "secondopinion");
        std::fs::remove_file(dir.path().join("secondopinion/records.toml")).unwrap();
        let err = ReferenceData::load(dir.path()).unwrap_err();
        assert_eq!(err.path, dir.path().join("secondopinion/records.toml"));

        // Rules naming a template the templates in force lack.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("notify")).unwrap();
        let rules = carepath_notify::SHIPPED_RULES.replacen(
            "template = \"precert-approved\"",
            "template = \"precert-approved-by-fax\"",
            1,
        );
        std::fs::write(dir.path().join("notify/rules.toml"), rules).unwrap();
        let err = ReferenceData::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("precert-approved-by-fax"), "{err}");
    }
}
