//! Loading catalogues: every kind of data mistake is reported with the file and the
//! entry, and versions are chosen by effective date.

use carepath_oncology::{Catalogue, CatalogueSet};
use chrono::NaiveDate;

/// The shipped files with one text replacement made in one of them.
fn shipped_with(file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    let mut replaced = false;
    let files = Catalogue::shipped_files()
        .iter()
        .map(|(name, text)| {
            let text = if *name == file {
                assert!(text.contains(from), "{file} has no {from:?}");
                replaced = true;
                text.replacen(from, to, 1)
            } else {
                (*text).to_owned()
            };
            ((*name).to_owned(), text)
        })
        .collect();
    assert!(replaced, "no file {file}");
    files
}

fn load(files: &[(String, String)]) -> Result<Catalogue, carepath_oncology::CatalogueError> {
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Catalogue::from_toml_files(&borrowed)
}

#[test]
fn errors_name_the_file_and_the_entry() {
    let cases = [
        (
            "breast.toml",
            "drug = \"carboplatin\"",
            "drug = \"carboplatn\"",
            "breast.toml: regimen \"tchp\" components[1] (carboplatn): unknown drug \"carboplatn\"",
        ),
        (
            "lung.toml",
            "regimens = [\"osimertinib\"]",
            "regimens = [\"osimertinb\"]",
            "lung.toml: cancer \"nsclc\" situation \"nsclc-egfr-metastatic-first\": unknown regimen \"osimertinb\"",
        ),
        (
            "lung.toml",
            "regimens = [\"osimertinib\"]",
            "regimens = [\"osimertinb\"]",
            "lung.toml: regimen \"osimertinib\": no situation lists this regimen, so it is on no pathway",
        ),
        (
            "breast.toml",
            "basis = \"mg/m2\"",
            "basis = \"mg/m3\"",
            "breast.toml: regimen \"tchp\" components[0] (docetaxel): unknown dose basis \"mg/m3\"",
        ),
        (
            "gastrointestinal.toml",
            "days = \"1-14\"",
            "days = \"1-24\"",
            "gastrointestinal.toml: regimen \"capox\" components[1] (capecitabine): days 1-24 do not fit a 21-day cycle",
        ),
        (
            "melanoma.toml",
            "id = \"nivolumab\"\n",
            "id = \"tchp\"\n",
            "melanoma.toml: regimen \"tchp\": regimen id is already defined in breast.toml",
        ),
        (
            "lymphoma.toml",
            "icd10 = [\"C83.3\"]",
            "icd10 = [\"C50-C51\"]",
            "breast.toml: cancer \"breast\": icd10 range C50 overlaps C50-C51 of cancer \"dlbcl\"",
        ),
        (
            "drugs.toml",
            "code = \"J9171\"",
            "code = \"99213\"",
            "drugs.toml: drug \"docetaxel\": 99213 is a cpt code; drugs are billed with hcpcs level ii codes",
        ),
        (
            "drugs.toml",
            "code = \"J9045\", unit = \"50 mg\"",
            "code = \"J9045\", unit = \"50 units\"",
            "drugs.toml: drug \"carboplatin\": billing unit \"50 units\" must be an amount and mg or mcg",
        ),
        (
            "lung.toml",
            "\"PD-L1\" = \">=50%\"",
            "\"PD-L1\" = \">=half\"",
            "lung.toml: cancer \"nsclc\" situation \"nsclc-pdl1-high-first\": \"half\" must be a non-negative number",
        ),
        (
            "breast.toml",
            "lines = [\"first\"]",
            "lines = [\"fifth\"]",
            "breast.toml: cancer \"breast\" situation \"breast-her2-metastatic-first\": unknown line of therapy \"fifth\"",
        ),
        (
            "supportive-care.toml",
            "required = [\"serotonin_antagonist\", \"dexamethasone\"]",
            "required = [\"serotonin_antagonist\", \"g_csf\"]",
            "supportive-care.toml: [antiemetics.moderate]: class \"g_csf\" is not an antiemetic drug class",
        ),
        (
            "supportive-care.toml",
            "at_least = 4",
            "at_least = nan",
            "supportive-care.toml: antiemetics.escalations[0]: at_least must be a number, 0 or more",
        ),
        (
            "catalogue.toml",
            "site = \"office\"\nrelative_cost = 0.72",
            "site = \"office\"\nrelative_cost = -1",
            "catalogue.toml: sites[1] (office): relative_cost must be a positive number",
        ),
        (
            "breast.toml",
            "sites = [\"hospital_outpatient\", \"office\"]\ncycle_length_days = 21\ncycles = 6",
            "sites = [\"hospital_outpatient\", \"clinic\"]\ncycle_length_days = 21\ncycles = 6",
            "breast.toml: regimen \"tchp\": unknown site of service \"clinic\"",
        ),
        (
            "lung.toml",
            "[[regimens]]\nid = \"osimertinib\"\n",
            "[[regimens]]\nid = \"osimertinib\"\ncolour = \"blue\"\n",
            "lung.toml: TOML parse error at line 79, column 1 | 79 | colour = \"blue\" | ^^^^^^ unknown field `colour`",
        ),
        (
            "catalogue.toml",
            "[catalogue]",
            "[catalog]",
            "catalogue.toml: TOML parse error at line 4, column 2 | 4 | [catalog] | ^^^^^^^ unknown field `catalog`",
        ),
    ];
    for (file, from, to, expected) in cases {
        let err = load(&shipped_with(file, from, to)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(expected),
            "{file}: {from:?} -> {to:?}\nexpected: {expected}\ngot: {text}"
        );
    }
}

#[test]
fn a_missing_section_names_the_files_searched() {
    let files: Vec<(String, String)> = Catalogue::shipped_files()
        .iter()
        .filter(|(name, _)| *name != "supportive-care.toml")
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    let err = load(&files).unwrap_err().to_string();
    assert!(
        err.contains("catalogue.toml, drugs.toml, breast.toml, lung.toml, gastrointestinal.toml, lymphoma.toml, melanoma.toml: no file has a [growth_factor] section"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut files = shipped_with("breast.toml", "dose = 75\n", "dose = -75\n");
    files.push(("extra.toml".into(), "[catalogue]\nversion = \"x\"\neffective_from = 2026-01-01\nnotice = \"n\"\ndose_tolerance_percent = 10\n".into()));
    let err = load(&files).unwrap_err();
    let sources: Vec<_> = err
        .problems
        .iter()
        .map(|p| p.source_name.as_str())
        .collect();
    assert!(
        sources.contains(&"breast.toml") && sources.contains(&"extra.toml"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("extra.toml: [catalogue] is already given in catalogue.toml"),
        "{err}"
    );
}

#[test]
fn the_shipped_files_load_and_say_what_they_are() {
    let catalogue = Catalogue::shipped();
    assert_eq!(catalogue.version(), "2026.1-illustrative");
    assert_eq!(
        catalogue.effective_from(),
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    );
    assert!(catalogue.notice().to_lowercase().contains("illustrative"));
    assert!((catalogue.dose_tolerance() - 0.1).abs() < 1e-12);
    for (_, text) in Catalogue::shipped_files() {
        assert!(
            text.contains("NOT CLINICAL GUIDANCE"),
            "every file carries the label"
        );
    }
}

fn version(label: &str, from: &str, until: Option<&str>) -> Catalogue {
    let mut header = format!("version = \"{label}\"\neffective_from = {from}\n");
    if let Some(until) = until {
        header.push_str(&format!("effective_until = {until}\n"));
    }
    let files = shipped_with(
        "catalogue.toml",
        "version = \"2026.1-illustrative\"\neffective_from = 2026-01-01\n",
        &header,
    );
    load(&files).unwrap()
}

#[test]
fn the_version_in_effect_is_chosen_by_date() {
    let set = CatalogueSet::new(vec![
        version("2026.2", "2026-07-01", None),
        version("2026.1", "2026-01-01", Some("2026-06-30")),
    ])
    .unwrap();
    let on = |d: &str| {
        set.in_effect_on(d.parse().unwrap())
            .map(|c| c.version().to_owned())
    };
    assert_eq!(on("2025-12-31"), None);
    assert_eq!(on("2026-01-01").as_deref(), Some("2026.1"));
    assert_eq!(on("2026-06-30").as_deref(), Some("2026.1"));
    assert_eq!(on("2026-07-01").as_deref(), Some("2026.2"));
    assert_eq!(on("2030-01-01").as_deref(), Some("2026.2"));
    assert_eq!(
        set.version("2026.1").unwrap().effective_until(),
        NaiveDate::from_ymd_opt(2026, 6, 30)
    );
    assert_eq!(set.versions()[0].version(), "2026.1");

    // A gap between versions is a day with no catalogue.
    let gap = CatalogueSet::new(vec![
        version("a", "2026-01-01", Some("2026-03-31")),
        version("b", "2026-05-01", None),
    ])
    .unwrap();
    assert!(gap.in_effect_on("2026-04-15".parse().unwrap()).is_none());

    let err = CatalogueSet::new(vec![
        version("a", "2026-01-01", Some("2026-08-01")),
        version("b", "2026-07-01", None),
    ])
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("catalogue a: its effective period overlaps version b"),
        "{err}"
    );
    let err = CatalogueSet::new(vec![
        version("a", "2026-01-01", None),
        version("a", "2027-01-01", None),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("version is loaded twice"), "{err}");

    let err = load(&shipped_with(
        "catalogue.toml",
        "effective_from = 2026-01-01",
        "effective_from = 2026-01-01T08:00:00",
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "catalogue.toml: [catalogue]: 2026-01-01T08:00:00 must be a date without a time"
        ),
        "{err}"
    );
}
