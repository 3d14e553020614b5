//! The second-opinion reference data: qualifying diagnosis groups, condition-specific
//! questionnaires and required records, loaded from versioned TOML files and validated
//! as a whole, with every problem naming its file and entry.

use std::{collections::BTreeSet, fmt};

use carepath_core::{Icd10Code, Specialty};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::questionnaire::{Question, QuestionType, Questionnaire};

/// Why a diagnosis group qualifies for a second opinion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    LifeThreatening,
    LifeAltering,
    Serious,
    Rare,
    /// Qualifies only when major surgery has been recommended.
    MajorSurgery,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::LifeThreatening => "life_threatening",
            Basis::LifeAltering => "life_altering",
            Basis::Serious => "serious",
            Basis::Rare => "rare",
            Basis::MajorSurgery => "major_surgery",
        }
    }
}

/// What a medical record is; required-record rules name these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Xray,
    Mri,
    Ct,
    PathologySlide,
    ClinicalReport,
    LabResult,
    Other,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Xray,
        RecordKind::Mri,
        RecordKind::Ct,
        RecordKind::PathologySlide,
        RecordKind::ClinicalReport,
        RecordKind::LabResult,
        RecordKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Xray => "xray",
            RecordKind::Mri => "mri",
            RecordKind::Ct => "ct",
            RecordKind::PathologySlide => "pathology_slide",
            RecordKind::ClinicalReport => "clinical_report",
            RecordKind::LabResult => "lab_result",
            RecordKind::Other => "other",
        }
    }
}

/// An inclusive ICD-10-CM range, hierarchical as [`Icd10Code::in_range`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisRange {
    pub from: Icd10Code,
    pub to: Icd10Code,
}

/// A diagnosis group that qualifies for a second opinion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisGroup {
    pub id: String,
    /// The condition as members and notices name it.
    pub name: String,
    pub basis: Basis,
    pub diagnoses: Vec<DiagnosisRange>,
    /// An expert must have one of these specialties.
    pub specialties: Vec<Specialty>,
    /// Business days from complete records to the published opinion.
    pub turnaround_business_days: u32,
}

impl DiagnosisGroup {
    pub fn covers(&self, code: &Icd10Code) -> bool {
        self.diagnoses.iter().any(|r| code.in_range(&r.from, &r.to))
    }
}

/// One record a group needs before review; met by any record of `kinds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRequirement {
    pub group: String,
    pub id: String,
    pub label: String,
    pub kinds: Vec<RecordKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    version: String,
    effective_from: NaiveDate,
    expert_capacity: u32,
    #[serde(rename = "group")]
    groups: Vec<DiagnosisGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionnairesFile {
    version: String,
    effective_from: NaiveDate,
    #[serde(rename = "questionnaire")]
    questionnaires: Vec<Questionnaire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsFile {
    version: String,
    effective_from: NaiveDate,
    #[serde(rename = "requirement")]
    requirements: Vec<RecordRequirement>,
}

/// One problem in the reference data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    /// The entry at fault (`group[cancer]`), empty for the file as a whole.
    pub entry: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.entry, self.message)
        }
    }
}

/// Every problem found while loading, so one run reports them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("second-opinion data is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadErrors(pub Vec<LoadError>);

/// The version of each file in force, shown with every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub groups: String,
    pub questionnaires: String,
    pub records: String,
}

/// The validated reference data.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub versions: Versions,
    pub effective_from: NaiveDate,
    /// Open requests one expert may lead at a time.
    pub expert_capacity: u32,
    groups: Vec<DiagnosisGroup>,
    questionnaires: Vec<Questionnaire>,
    requirements: Vec<RecordRequirement>,
}

/// The file names [`Catalogue::load`] expects, in its argument order.
pub const FILES: [&str; 3] = ["groups.toml", "questionnaires.toml", "records.toml"];

/// The data shipped in `data/secondopinion/`.
pub fn shipped() -> Catalogue {
    Catalogue::load(
        (
            "groups.toml",
            include_str!("../../../data/secondopinion/groups.toml"),
        ),
        (
            "questionnaires.toml",
            include_str!("../../../data/secondopinion/questionnaires.toml"),
        ),
        (
            "records.toml",
            include_str!("../../../data/secondopinion/records.toml"),
        ),
    )
    .expect("the shipped second-opinion data is valid")
}

struct Problems<'a> {
    file: &'a str,
    errors: &'a mut Vec<LoadError>,
}

impl Problems<'_> {
    fn push(&mut self, entry: impl Into<String>, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: self.file.to_owned(),
            entry: entry.into(),
            message: message.into(),
        });
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    (file, text): (&str, &str),
    errors: &mut Vec<LoadError>,
) -> Option<T> {
    match toml::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(LoadError {
                file: file.to_owned(),
                entry: String::new(),
                message: e.to_string().trim().replace('\n', " "),
            });
            None
        }
    }
}

impl Catalogue {
    /// Loads and cross-checks the three files, each given as `(name, text)`.
    pub fn load(
        groups: (&str, &str),
        questionnaires: (&str, &str),
        records: (&str, &str),
    ) -> Result<Catalogue, LoadErrors> {
        let mut errors = Vec::new();
        let g: Option<GroupsFile> = parse(groups, &mut errors);
        let q: Option<QuestionnairesFile> = parse(questionnaires, &mut errors);
        let r: Option<RecordsFile> = parse(records, &mut errors);
        let (Some(g), Some(q), Some(r)) = (g, q, r) else {
            return Err(LoadErrors(errors));
        };

        let mut p = Problems {
            file: groups.0,
            errors: &mut errors,
        };
        if g.expert_capacity == 0 {
            p.push("expert_capacity", "must be at least 1");
        }
        let mut ids = BTreeSet::new();
        for group in &g.groups {
            let entry = format!("group[{}]", group.id);
            if group.id.trim().is_empty() {
                p.push(&entry, "id must not be empty");
            }
            if !ids.insert(group.id.as_str()) {
                p.push(&entry, "duplicate group id");
            }
            if group.name.trim().is_empty() {
                p.push(&entry, "name must not be empty");
            }
            if group.diagnoses.is_empty() {
                p.push(&entry, "needs at least one diagnosis range");
            }
            for range in &group.diagnoses {
                if !range.from.in_range(&range.from, &range.to) {
                    p.push(
                        &entry,
                        format!("range {}-{} is reversed", range.from, range.to),
                    );
                }
            }
            if group.specialties.is_empty() {
                p.push(&entry, "needs at least one specialty");
            }
            if group.turnaround_business_days == 0 {
                p.push(&entry, "turnaround_business_days must be at least 1");
            }
        }
        for (i, a) in g.groups.iter().enumerate() {
            for b in &g.groups[i + 1..] {
                let overlap = a.diagnoses.iter().any(|x| {
                    b.diagnoses
                        .iter()
                        .any(|y| x.from.in_range(&y.from, &y.to) || y.from.in_range(&x.from, &x.to))
                });
                if overlap {
                    p.push(
                        format!("group[{}]", b.id),
                        format!("diagnoses overlap group {}", a.id),
                    );
                }
            }
        }

        let mut p = Problems {
            file: questionnaires.0,
            errors: &mut errors,
        };
        let mut seen = BTreeSet::new();
        for questionnaire in &q.questionnaires {
            let entry = format!(
                "questionnaire[{}@{}]",
                questionnaire.id, questionnaire.version
            );
            if questionnaire.id.trim().is_empty() {
                p.push(&entry, "id must not be empty");
            }
            if !seen.insert((questionnaire.id.as_str(), questionnaire.version)) {
                p.push(&entry, "duplicate id and version");
            }
            if questionnaire.title.trim().is_empty() {
                p.push(&entry, "title must not be empty");
            }
            if !ids.contains(questionnaire.group.as_str()) {
                p.push(&entry, format!("unknown group {}", questionnaire.group));
            }
            if questionnaire.questions.is_empty() {
                p.push(&entry, "needs at least one question");
            }
            check_questions(&mut p, &entry, &questionnaire.questions);
        }
        for group in &g.groups {
            if !q.questionnaires.iter().any(|x| x.group == group.id) {
                p.push(format!("group[{}]", group.id), "has no questionnaire");
            }
        }

        let mut p = Problems {
            file: records.0,
            errors: &mut errors,
        };
        let mut seen = BTreeSet::new();
        for req in &r.requirements {
            let entry = format!("requirement[{}/{}]", req.group, req.id);
            if !ids.contains(req.group.as_str()) {
                p.push(&entry, format!("unknown group {}", req.group));
            }
            if req.id.trim().is_empty() {
                p.push(&entry, "id must not be empty");
            }
            if !seen.insert((req.group.as_str(), req.id.as_str())) {
                p.push(&entry, "duplicate requirement");
            }
            if req.label.trim().is_empty() {
                p.push(&entry, "label must not be empty");
            }
            if req.kinds.is_empty() {
                p.push(&entry, "needs at least one record kind");
            }
        }
        for group in &g.groups {
            if !r.requirements.iter().any(|x| x.group == group.id) {
                p.push(format!("group[{}]", group.id), "requires no records");
            }
        }

        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Ok(Catalogue {
            versions: Versions {
                groups: g.version,
                questionnaires: q.version,
                records: r.version,
            },
            effective_from: g.effective_from.max(q.effective_from).max(r.effective_from),
            expert_capacity: g.expert_capacity,
            groups: g.groups,
            questionnaires: q.questionnaires,
            requirements: r.requirements,
        })
    }

    pub fn groups(&self) -> &[DiagnosisGroup] {
        &self.groups
    }

    pub fn group(&self, id: &str) -> Option<&DiagnosisGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The group a diagnosis falls in, if any.
    pub fn group_of(&self, code: &Icd10Code) -> Option<&DiagnosisGroup> {
        self.groups.iter().find(|g| g.covers(code))
    }

    /// The highest version of the group's questionnaire.
    pub fn questionnaire_for(&self, group: &str) -> Option<&Questionnaire> {
        self.questionnaires
            .iter()
            .filter(|q| q.group == group)
            .max_by_key(|q| q.version)
    }

    /// A questionnaire by id and version, for requests that started on an older one.
    pub fn questionnaire(&self, id: &str, version: u32) -> Option<&Questionnaire> {
        self.questionnaires
            .iter()
            .find(|q| q.id == id && q.version == version)
    }

    pub fn requirements_for(&self, group: &str) -> Vec<RecordRequirement> {
        self.requirements
            .iter()
            .filter(|r| r.group == group)
            .cloned()
            .collect()
    }
}

fn check_questions(p: &mut Problems<'_>, entry: &str, questions: &[Question]) {
    let mut earlier: Vec<&Question> = Vec::new();
    for question in questions {
        let at = format!("{entry}.question[{}]", question.id);
        if question.id.trim().is_empty() {
            p.push(&at, "id must not be empty");
        }
        if earlier.iter().any(|e| e.id == question.id) {
            p.push(&at, "duplicate question id");
        }
        if question.text.trim().is_empty() {
            p.push(&at, "text must not be empty");
        }
        match question.kind {
            QuestionType::Choice if question.options.is_empty() => {
                p.push(&at, "a choice question needs options");
            }
            QuestionType::Choice => {}
            _ if !question.options.is_empty() => {
                p.push(&at, "only choice questions have options");
            }
            _ => {}
        }
        if (question.min.is_some() || question.max.is_some())
            && question.kind != QuestionType::Number
        {
            p.push(&at, "only number questions have min and max");
        }
        // TOML reads `nan` and `inf` as numbers; a NaN bound would let every answer
        // through.
        for (name, bound) in [("min", question.min), ("max", question.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                p.push(&at, format!("{name} must be a finite number"));
            }
        }
        if let (Some(min), Some(max)) = (question.min, question.max)
            && min > max
        {
            p.push(&at, "min is above max");
        }
        if let Some(when) = &question.when {
            match earlier.iter().find(|e| e.id == when.question) {
                None => p.push(
                    &at,
                    format!(
                        "condition names {}, which is not an earlier question",
                        when.question
                    ),
                ),
                Some(e) => {
                    let ok = match e.kind {
                        QuestionType::YesNo => when.equals == "yes" || when.equals == "no",
                        QuestionType::Choice => e.options.contains(&when.equals),
                        _ => false,
                    };
                    if !ok {
                        p.push(
                            &at,
                            format!(
                                "condition value {:?} is not a possible answer to {}",
                                when.equals, when.question
                            ),
                        );
                    }
                }
            }
        }
        earlier.push(question);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPS: &str = r#"
version = "t"
effective_from = "2026-01-01"
expert_capacity = 2
[[group]]
id = "ckd"
name = "Chronic kidney disease"
basis = "serious"
diagnoses = [{ from = "N18", to = "N18" }]
specialties = ["nephrology"]
turnaround_business_days = 10
"#;

    const RECORDS: &str = r#"
version = "t"
effective_from = "2026-01-01"
[[requirement]]
group = "ckd"
id = "labs"
label = "Labs"
kinds = ["lab_result"]
"#;

    fn questionnaires(questions: &str) -> String {
        format!(
            "version = \"t\"\neffective_from = \"2026-01-01\"\n[[questionnaire]]\nid = \"ckd\"\nversion = 1\ngroup = \"ckd\"\ntitle = \"t\"\n{questions}"
        )
    }

    fn load(q: &str) -> Result<Catalogue, LoadErrors> {
        Catalogue::load(
            ("groups.toml", GROUPS),
            ("questionnaires.toml", q),
            ("records.toml", RECORDS),
        )
    }

    #[test]
    fn shipped_data_loads_and_covers_the_stories() {
        let c = shipped();
        let ckd = c.group_of(&Icd10Code::parse("N18.6").unwrap()).unwrap();
        assert_eq!(ckd.id, "chronic_kidney_disease");
        let knee = c.group_of(&Icd10Code::parse("M17.0").unwrap()).unwrap();
        assert_eq!(knee.basis, Basis::MajorSurgery);
        assert!(c.group_of(&Icd10Code::parse("J06.9").unwrap()).is_none());
        for g in c.groups() {
            assert!(c.questionnaire_for(&g.id).is_some(), "{}", g.id);
            assert!(!c.requirements_for(&g.id).is_empty(), "{}", g.id);
        }
    }

    #[test]
    fn conditions_must_name_an_earlier_question_and_a_possible_answer() {
        let q = questionnaires(
            r#"
[[questionnaire.question]]
id = "kind"
text = "Which kind?"
type = "choice"
options = ["a", "b"]
required = true
when = { question = "later", equals = "yes" }
[[questionnaire.question]]
id = "later"
text = "Later?"
type = "yes_no"
required = true
[[questionnaire.question]]
id = "detail"
text = "Detail"
type = "text"
required = true
when = { question = "kind", equals = "c" }
"#,
        );
        let errors = load(&q).unwrap_err().0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "questionnaires.toml: questionnaire[ckd@1].question[kind]: condition names later, which is not an earlier question",
                "questionnaires.toml: questionnaire[ckd@1].question[detail]: condition value \"c\" is not a possible answer to kind",
            ]
        );
    }

    #[test]
    fn bounds_must_be_finite_and_names_given() {
        let q = questionnaires(
            r#"
[[questionnaire.question]]
id = "egfr"
text = "Latest eGFR"
type = "number"
required = false
min = 0
max = nan
[[questionnaire.question]]
id = "age"
text = "Age"
type = "number"
required = false
min = -inf
"#,
        )
        .replace("title = \"t\"", "title = \" \"");
        let errors = load(&q).unwrap_err().0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "questionnaires.toml: questionnaire[ckd@1]: title must not be empty",
                "questionnaires.toml: questionnaire[ckd@1].question[egfr]: max must be a finite number",
                "questionnaires.toml: questionnaire[ckd@1].question[age]: min must be a finite number",
            ]
        );
        let q = questionnaires(
            "[[questionnaire.question]]\nid = \"x\"\ntext = \"x\"\ntype = \"text\"\nrequired = true\n",
        );
        let errors = Catalogue::load(
            ("groups.toml", GROUPS),
            (
                "questionnaires.toml",
                &q.replace("id = \"ckd\"\nversion", "id = \"\"\nversion"),
            ),
            (
                "records.toml",
                &RECORDS.replace("id = \"labs\"", "id = \"\""),
            ),
        )
        .unwrap_err()
        .0;
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "questionnaires.toml: questionnaire[@1]: id must not be empty",
                "records.toml: requirement[ckd/]: id must not be empty",
            ]
        );
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let err = Catalogue::load(
            ("groups.toml", "version = "),
            ("questionnaires.toml", &questionnaires("")),
            ("records.toml", RECORDS),
        )
        .unwrap_err();
        assert_eq!(err.0[0].file, "groups.toml");
    }

    #[test]
    fn a_group_without_questionnaire_or_records_is_named() {
        let groups = format!(
            "{GROUPS}\n[[group]]\nid = \"hf\"\nname = \"Heart failure\"\nbasis = \"life_threatening\"\ndiagnoses = [{{ from = \"I50\", to = \"I50\" }}]\nspecialties = [\"cardiology\"]\nturnaround_business_days = 7\n"
        );
        let q = questionnaires(
            "[[questionnaire.question]]\nid = \"x\"\ntext = \"x\"\ntype = \"text\"\nrequired = true\n",
        );
        let errors = Catalogue::load(
            ("groups.toml", &groups),
            ("questionnaires.toml", &q),
            ("records.toml", RECORDS),
        )
        .unwrap_err()
        .0;
        let entries: Vec<_> = errors
            .iter()
            .map(|e| (e.file.as_str(), e.entry.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            entries,
            [
                ("questionnaires.toml", "group[hf]", "has no questionnaire"),
                ("records.toml", "group[hf]", "requires no records"),
            ]
        );
    }
}
