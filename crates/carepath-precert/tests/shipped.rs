//! Table-driven checks of the shipped lists: every category, the network and plan
//! rules, the precedence of exemptions, maternity thresholds and the 2027 version
//! switch.

use carepath_core::{Icd10Code, NetworkStatus, Plan, PlanId, ProviderKind, ServiceCode, Setting};
use carepath_precert::{
    Admission, Category, Delivery, Program, Requirement, Responsible, RuleBook, ServiceLine,
    shipped,
};
use chrono::NaiveDate;

use NetworkStatus::{InNetwork, OutOfNetwork};
use Requirement::{NotCovered, NotRequired, NotifyOnly, Required};
use Responsible::{Member, Nobody, Provider};

fn plan(pcm: bool, out_of_network: bool) -> Plan {
    Plan {
        id: PlanId::parse(if pcm { "PLAN-PCM-OAP" } else { "PLAN-STD-OAP" }).unwrap(),
        name: "Test plan".into(),
        preferred_care_management: pcm,
        covers_out_of_network: out_of_network,
    }
}

/// One row of a table: a service and what the list should say about it.
#[derive(Clone)]
struct Row {
    code: &'static str,
    setting: Setting,
    facility: Option<ProviderKind>,
    date: &'static str,
    network: NetworkStatus,
    pcm: bool,
    covers_oon: bool,
    dx: &'static [&'static str],
    units: u32,
    los: Option<u32>,
    delivery: Option<Delivery>,
    admission: Admission,
}

fn row(code: &'static str, setting: Setting) -> Row {
    Row {
        code,
        setting,
        facility: None,
        date: "2026-03-02",
        network: InNetwork,
        pcm: true,
        covers_oon: true,
        dx: &[],
        units: 1,
        los: None,
        delivery: None,
        admission: Admission::Elective,
    }
}

impl Row {
    fn at(mut self, facility: ProviderKind) -> Self {
        self.facility = Some(facility);
        self
    }
    fn on(mut self, date: &'static str) -> Self {
        self.date = date;
        self
    }
    fn oon(mut self) -> Self {
        self.network = OutOfNetwork;
        self
    }
    fn no_oon_cover(mut self) -> Self {
        self.covers_oon = false;
        self
    }
    fn non_pcm(mut self) -> Self {
        self.pcm = false;
        self
    }
    fn dx(mut self, dx: &'static [&'static str]) -> Self {
        self.dx = dx;
        self
    }
    fn units(mut self, units: u32) -> Self {
        self.units = units;
        self
    }
    fn stay(mut self, delivery: Delivery, hours: u32) -> Self {
        self.delivery = Some(delivery);
        self.los = Some(hours);
        self
    }
    fn admitted(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    fn run(
        &self,
        book: &RuleBook,
    ) -> (
        Requirement,
        Responsible,
        Option<String>,
        Option<Category>,
        Option<Program>,
        String,
    ) {
        let line = ServiceLine {
            code: ServiceCode::parse(self.code).unwrap(),
            units: self.units,
            date_of_service: NaiveDate::parse_from_str(self.date, "%Y-%m-%d").unwrap(),
            setting: self.setting,
            facility_kind: self.facility,
            length_of_stay_hours: self.los,
            delivery: self.delivery,
            admission: self.admission,
        };
        let dx: Vec<Icd10Code> = self
            .dx
            .iter()
            .map(|d| Icd10Code::parse(d).unwrap())
            .collect();
        let check = book
            .check(&plan(self.pcm, self.covers_oon), self.network, &line, &dx)
            .unwrap();
        (
            check.requirement,
            check.responsible,
            check.rule.map(|r| r.id.clone()),
            check.rule.map(|r| r.category),
            check.program(),
            check.list.version.clone(),
        )
    }
}

#[test]
fn every_category_on_the_2026_list() {
    use ProviderKind::*;
    use Setting::*;
    let book = shipped();
    // (row, requirement, responsible, rule id)
    let table: Vec<(Row, Requirement, Responsible, Option<&str>)> = vec![
        // Advanced imaging and the network rules.
        (
            row("70553", Outpatient),
            Required,
            Provider,
            Some("IMG-MRI"),
        ),
        (
            row("70553", Office).oon(),
            Required,
            Member,
            Some("IMG-MRI"),
        ),
        (
            row("70553", Outpatient).oon().no_oon_cover(),
            NotCovered,
            Nobody,
            Some("IMG-MRI"),
        ),
        (row("70336", Office), Required, Provider, Some("IMG-MRI")),
        (
            row("77049", Outpatient),
            Required,
            Provider,
            Some("IMG-MRI"),
        ),
        (row("74160", Outpatient), Required, Provider, Some("IMG-CT")),
        (
            row("72196", Outpatient),
            Required,
            Provider,
            Some("IMG-MRI"),
        ),
        (row("72193", Outpatient), Required, Provider, Some("IMG-CT")),
        (row("75572", Outpatient), Required, Provider, Some("IMG-CT")),
        (
            row("78815", Outpatient).dx(&["C50.911"]),
            Required,
            Provider,
            Some("IMG-PET"),
        ),
        (
            row("78608", Outpatient),
            Required,
            Provider,
            Some("IMG-PET"),
        ),
        // Not on the list at all.
        (row("99213", Office), NotRequired, Nobody, None),
        (row("70560", Outpatient), NotRequired, Nobody, None),
        // Inpatient admissions by facility kind, transfers and emergencies.
        (
            row("27447", Inpatient).at(AcuteHospital),
            Required,
            Provider,
            Some("INPT-ACUTE"),
        ),
        (
            row("99221", Inpatient).at(SkilledNursing),
            Required,
            Provider,
            Some("INPT-SNF"),
        ),
        (
            row("99221", Inpatient).at(Rehabilitation),
            Required,
            Provider,
            Some("INPT-REHAB"),
        ),
        (
            row("99221", Inpatient).at(LongTermAcuteCare),
            Required,
            Provider,
            Some("INPT-LTAC"),
        ),
        (
            row("99221", Inpatient).at(Hospice),
            Required,
            Provider,
            Some("INPT-HOSPICE"),
        ),
        (
            row("99221", Inpatient)
                .at(SkilledNursing)
                .admitted(Admission::Transfer),
            Required,
            Provider,
            Some("INPT-TRANSFER"),
        ),
        (
            row("99221", Inpatient)
                .at(AcuteHospital)
                .admitted(Admission::Emergency),
            NotifyOnly,
            Provider,
            Some("INPT-EMERGENCY"),
        ),
        (
            row("99221", Inpatient)
                .at(AcuteHospital)
                .admitted(Admission::Emergency)
                .oon(),
            NotifyOnly,
            Member,
            Some("INPT-EMERGENCY"),
        ),
        // Emergencies are covered out of network even without out-of-network cover.
        (
            row("99221", Inpatient)
                .at(AcuteHospital)
                .admitted(Admission::Emergency)
                .oon()
                .no_oon_cover(),
            NotifyOnly,
            Member,
            Some("INPT-EMERGENCY"),
        ),
        // Observation: non-obstetric only.
        (
            row("G0378", Outpatient),
            Required,
            Provider,
            Some("OBS-STAY"),
        ),
        (
            row("G0378", Outpatient).dx(&["O26.891"]),
            NotRequired,
            Nobody,
            Some("OBS-OBSTETRIC"),
        ),
        // Maternity thresholds: 48 h vaginal, 96 h Caesarean.
        (
            row("59400", Inpatient)
                .at(AcuteHospital)
                .stay(Delivery::Vaginal, 72),
            Required,
            Provider,
            Some("MAT-VAGINAL-EXTENDED"),
        ),
        (
            row("59400", Inpatient)
                .at(AcuteHospital)
                .stay(Delivery::Vaginal, 36),
            NotRequired,
            Nobody,
            Some("MAT-VAGINAL-ROUTINE"),
        ),
        (
            row("59400", Inpatient)
                .at(AcuteHospital)
                .stay(Delivery::Vaginal, 48),
            NotRequired,
            Nobody,
            Some("MAT-VAGINAL-ROUTINE"),
        ),
        (
            row("59510", Inpatient)
                .at(AcuteHospital)
                .stay(Delivery::Caesarean, 100),
            Required,
            Provider,
            Some("MAT-CAESAREAN-EXTENDED"),
        ),
        (
            row("59510", Inpatient)
                .at(AcuteHospital)
                .stay(Delivery::Caesarean, 90),
            NotRequired,
            Nobody,
            Some("MAT-CAESAREAN-ROUTINE"),
        ),
        // Without a length of stay the exemption cannot apply: the admission rule does.
        (
            row("59510", Inpatient).at(AcuteHospital),
            Required,
            Provider,
            Some("INPT-ACUTE"),
        ),
        // Experimental, cosmetic, reconstructive.
        (
            row("0042T", Outpatient),
            Required,
            Provider,
            Some("EXP-CATEGORY-III"),
        ),
        (
            row("15823", Outpatient),
            Required,
            Provider,
            Some("COS-FACE-BODY"),
        ),
        (
            row("30410", Outpatient),
            Required,
            Provider,
            Some("COS-RHINOPLASTY"),
        ),
        (
            row("19357", Outpatient),
            Required,
            Provider,
            Some("REC-BREAST"),
        ),
        (
            row("21210", Outpatient),
            Required,
            Provider,
            Some("REC-JAW-FACE"),
        ),
        (
            row("30520", Outpatient),
            Required,
            Provider,
            Some("REC-NASAL"),
        ),
        // Outpatient surgery, and the plan-level difference for plans without PCM.
        (
            row("27447", Outpatient),
            Required,
            Provider,
            Some("SURG-KNEE-ARTHROPLASTY"),
        ),
        (
            row("29881", Outpatient),
            Required,
            Provider,
            Some("SURG-KNEE-ARTHROSCOPY"),
        ),
        (row("29870", Outpatient), NotRequired, Nobody, None),
        (
            row("29870", Outpatient).non_pcm(),
            Required,
            Provider,
            Some("SURG-KNEE-SCOPE-NON-PCM"),
        ),
        (
            row("63030", Outpatient),
            Required,
            Provider,
            Some("SURG-SPINE-DECOMPRESSION"),
        ),
        (
            row("22612", Outpatient),
            Required,
            Provider,
            Some("SURG-SPINE-FUSION"),
        ),
        (
            row("43775", Outpatient),
            Required,
            Provider,
            Some("SURG-BARIATRIC"),
        ),
        // Drugs: self-injectables are exempt; oncology drugs go to the program.
        (
            row("J1745", Office),
            Required,
            Provider,
            Some("DRUG-INJECTABLE"),
        ),
        (
            row("J3030", Home),
            NotRequired,
            Nobody,
            Some("DRUG-SELF-INJECTABLE"),
        ),
        (
            row("J1815", Home),
            NotRequired,
            Nobody,
            Some("DRUG-SELF-INJECTABLE"),
        ),
        (
            row("J9355", Outpatient),
            Required,
            Provider,
            Some("ONC-INFUSED"),
        ),
        (row("J8521", Home), Required, Provider, Some("ONC-ORAL")),
        // Oral and inhaled drugs with J codes are not injectables.
        (row("J7502", Home), NotRequired, Nobody, None),
        (row("J7613", Home), NotRequired, Nobody, None),
        (row("J8499", Home), NotRequired, Nobody, None),
        // Equipment, prosthetics, home care, dialysis.
        (
            row("E0784", Home),
            Required,
            Provider,
            Some("DME-INSULIN-PUMP"),
        ),
        (row("E0601", Home), Required, Provider, Some("DME-GENERAL")),
        (
            row("K0856", Home),
            Required,
            Provider,
            Some("DME-WHEELCHAIR"),
        ),
        (row("L5301", Office), Required, Provider, Some("PROS-LIMB")),
        (row("L8030", Office), Required, Provider, Some("PROS-OTHER")),
        (row("G0299", Home), Required, Provider, Some("HOME-HEALTH")),
        (row("99601", Home), Required, Provider, Some("HOME-HEALTH")),
        (
            row("S9500", Home),
            Required,
            Provider,
            Some("HOME-INFUSION"),
        ),
        (
            row("S9338", Home),
            Required,
            Provider,
            Some("HOME-INFUSION"),
        ),
        (
            row("90935", Outpatient),
            Required,
            Provider,
            Some("DIALYSIS"),
        ),
        // Therapies and specialty services.
        (
            row("92507", Office),
            Required,
            Provider,
            Some("SPEECH-THERAPY"),
        ),
        (
            row("58970", Outpatient),
            Required,
            Provider,
            Some("INFERTILITY"),
        ),
        (
            row("89280", Outpatient),
            Required,
            Provider,
            Some("INFERTILITY"),
        ),
        (
            row("93306", Outpatient),
            Required,
            Provider,
            Some("CARD-ECHO"),
        ),
        (
            row("93458", Outpatient),
            Required,
            Provider,
            Some("CARD-CATH"),
        ),
        (
            row("78452", Office),
            Required,
            Provider,
            Some("CARD-NUCLEAR"),
        ),
        (
            row("77385", Outpatient),
            Required,
            Provider,
            Some("RADIATION-THERAPY"),
        ),
        (
            row("64483", Outpatient),
            Required,
            Provider,
            Some("PAIN-INTERVENTIONS"),
        ),
        (
            row("64635", Office),
            Required,
            Provider,
            Some("PAIN-INTERVENTIONS"),
        ),
        // Behavioral health: routine outpatient exempt, intensive services not.
        (
            row("90834", Office),
            NotRequired,
            Nobody,
            Some("BH-ROUTINE-OUTPATIENT"),
        ),
        (
            row("90791", Outpatient),
            NotRequired,
            Nobody,
            Some("BH-ROUTINE-OUTPATIENT"),
        ),
        (row("90834", Inpatient), NotRequired, Nobody, None),
        (
            row("90870", Outpatient),
            Required,
            Provider,
            Some("BH-INTENSIVE"),
        ),
        (
            row("H0035", Outpatient),
            Required,
            Provider,
            Some("BH-INTENSIVE"),
        ),
    ];
    for (r, requirement, responsible, rule) in table {
        let (got_req, got_resp, got_rule, ..) = r.run(&book);
        assert_eq!(
            (got_req, got_resp, got_rule.as_deref()),
            (requirement, responsible, rule),
            "{} {} on {}",
            r.code,
            r.setting,
            r.date
        );
    }
}

#[test]
fn the_shipped_list_covers_every_category() {
    let book = shipped();
    for list in book.lists() {
        for category in Category::ALL {
            assert!(
                list.rules.iter().any(|r| r.category == *category),
                "{} {} has no {category} rule",
                list.id,
                list.version
            );
        }
    }
}

#[test]
fn oncology_goes_to_the_program() {
    let book = shipped();
    let (_, _, rule, category, program, _) = row("J9355", Setting::Outpatient).run(&book);
    assert_eq!(rule.as_deref(), Some("ONC-INFUSED"));
    assert_eq!(category, Some(Category::Oncology));
    assert_eq!(program, Some(Program::Oncology));
    // Oral oncology sits inside the injectable range; the narrower rule wins.
    let (_, _, rule, _, program, _) = row("J8700", Setting::Home).run(&book);
    assert_eq!(
        (rule.as_deref(), program),
        (Some("ONC-ORAL"), Some(Program::Oncology))
    );
}

#[test]
fn the_2027_version_takes_over_on_new_year() {
    let book = shipped();
    // (row, before, after, rule after)
    let table = [
        (
            row("93306", Setting::Outpatient),
            Required,
            NotRequired,
            None,
        ),
        (
            row("93351", Setting::Outpatient),
            Required,
            Required,
            Some("CARD-ECHO"),
        ),
        (
            row("92507", Setting::Office).units(8),
            Required,
            NotRequired,
            None,
        ),
        (
            row("92507", Setting::Office).units(20),
            Required,
            Required,
            Some("SPEECH-THERAPY"),
        ),
        (
            row("27130", Setting::Outpatient),
            NotRequired,
            Required,
            Some("SURG-HIP-ARTHROPLASTY"),
        ),
        (
            row("78815", Setting::Outpatient).dx(&["C50.911"]),
            Required,
            Required,
            Some("IMG-PET-ONCOLOGY"),
        ),
        (
            row("78815", Setting::Outpatient).dx(&["I25.10"]),
            Required,
            Required,
            Some("IMG-PET"),
        ),
    ];
    for (r, before, after, rule_after) in table {
        let (req, _, _, _, _, version) = r.clone().on("2026-12-31").run(&book);
        assert_eq!(
            (req, version.as_str()),
            (before, "2026.1"),
            "{} before",
            r.code
        );
        let (req, _, rule, _, _, version) = r.clone().on("2027-01-01").run(&book);
        assert_eq!(
            (req, rule.as_deref(), version.as_str()),
            (after, rule_after, "2027.1"),
            "{} after",
            r.code
        );
    }
}

#[test]
fn answers_explain_rule_version_and_precedence() {
    let book = shipped();
    let line = ServiceLine {
        code: ServiceCode::parse("J3030").unwrap(),
        units: 1,
        date_of_service: NaiveDate::from_ymd_opt(2026, 5, 4).unwrap(),
        setting: Setting::Home,
        facility_kind: None,
        length_of_stay_hours: None,
        delivery: None,
        admission: Admission::Elective,
    };
    let check = book
        .check(&plan(true, true), InNetwork, &line, &[])
        .unwrap();
    let answer = check.to_answer();
    assert_eq!(answer.rule.as_ref().unwrap().id, "DRUG-SELF-INJECTABLE");
    assert_eq!(answer.also_matched[0].id, "DRUG-INJECTABLE");
    assert_eq!(
        (answer.list.id.as_str(), answer.list.version.as_str()),
        ("standard", "2026.1")
    );
    assert!(
        answer
            .explanation
            .contains("takes precedence over DRUG-INJECTABLE"),
        "{}",
        answer.explanation
    );
    assert!(
        answer.explanation.contains("version 2026.1"),
        "{}",
        answer.explanation
    );
    assert!(answer.notice.contains("Illustrative"));
    assert!(answer.documents.is_empty());

    let mri = ServiceLine {
        code: ServiceCode::parse("70553").unwrap(),
        setting: Setting::Outpatient,
        ..line
    };
    let answer = book
        .check(&plan(true, true), OutOfNetwork, &mri, &[])
        .unwrap()
        .to_answer();
    assert!(
        answer.explanation.contains("the member must ask"),
        "{}",
        answer.explanation
    );
    assert_eq!(answer.documents[0].id, "clinical_notes");
    assert_eq!(answer.reviewer_specialty.as_deref(), Some("radiology"));
    let json = serde_json::to_value(&answer).unwrap();
    assert_eq!(json["requirement"], "required");
    assert_eq!(json["responsible"], "member");
}

#[test]
fn no_list_before_2026() {
    let book = shipped();
    let line = ServiceLine {
        code: ServiceCode::parse("70553").unwrap(),
        units: 1,
        date_of_service: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
        setting: Setting::Outpatient,
        facility_kind: None,
        length_of_stay_hours: None,
        delivery: None,
        admission: Admission::Elective,
    };
    let err = book
        .check(&plan(true, true), InNetwork, &line, &[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no precertification list is in force for plan PLAN-PCM-OAP on 2025-12-31"
    );
}

#[test]
fn batch_checks_keep_order() {
    let book = shipped();
    let lines: Vec<ServiceLine> = ["70553", "90834", "J9355"]
        .iter()
        .map(|c| ServiceLine {
            code: ServiceCode::parse(c).unwrap(),
            units: 1,
            date_of_service: NaiveDate::from_ymd_opt(2026, 5, 4).unwrap(),
            setting: Setting::Office,
            facility_kind: None,
            length_of_stay_hours: None,
            delivery: None,
            admission: Admission::Elective,
        })
        .collect();
    let out = book.check_many(&plan(true, true), InNetwork, &lines, &[]);
    let got: Vec<Requirement> = out
        .iter()
        .map(|c| c.as_ref().unwrap().requirement)
        .collect();
    assert_eq!(got, [Required, NotRequired, Required]);
}
