//! A generator of large catalogues, for benchmarks only: it copies a catalogue's
//! cancers and regimens under new ids and synthetic diagnosis codes, so evaluation can
//! be timed against a catalogue many times the size of the shipped one.
//!
//! The copies are not clinical data of any kind; their ICD-10-CM ranges use
//! external-cause categories (`V00` onwards) that no real cancer diagnosis falls in.

use carepath_core::Icd10Code;

use crate::catalogue::{Catalogue, Icd10Range};
use crate::load::build_index;

/// `base` with `copies - 1` renamed copies of every cancer and regimen placed before
/// the originals, so lookups of the real cancers search past every copy.
///
/// `copies = 100` gives a catalogue 100 times larger. Drugs, supportive-care rules and
/// site costs are shared. Copies beyond what the synthetic code space holds (over
/// 1,400 categories) reuse codes, which only makes diagnosis lookup slower.
pub fn scaled_catalogue(base: &Catalogue, copies: usize) -> Catalogue {
    let mut out = base.clone();
    out.version = format!("{}-x{copies}", base.version);
    out.cancers.clear();
    out.regimens.clear();
    let mut category = 0usize;
    for copy in 1..copies.max(1) {
        let offset = out.regimens.len();
        for r in &base.regimens {
            let mut r = r.clone();
            r.id = format!("{}-x{copy}", r.id);
            out.regimens.push(r);
        }
        for cancer in &base.cancers {
            let mut cancer = cancer.clone();
            cancer.id = format!("{}-x{copy}", cancer.id);
            let code = synthetic_category(category);
            category += 1;
            cancer.icd10 = vec![Icd10Range {
                from: code.clone(),
                to: code,
            }];
            for s in &mut cancer.situations {
                s.id = format!("{}-x{copy}", s.id);
                for id in &mut s.regimen_ids {
                    *id = format!("{id}-x{copy}");
                }
                for r in &mut s.regimen_index {
                    *r += offset;
                }
            }
            out.cancers.push(cancer);
        }
    }
    let offset = out.regimens.len();
    out.regimens.extend(base.regimens.iter().cloned());
    for cancer in &base.cancers {
        let mut cancer = cancer.clone();
        for s in &mut cancer.situations {
            for r in &mut s.regimen_index {
                *r += offset;
            }
        }
        out.cancers.push(cancer);
    }
    // Drug indexes are shared with the base catalogue and stay valid.
    build_index(&mut out);
    out
}

/// The `n`th synthetic category: V00..V99, V0A..V9Z, then W, X, Y the same way.
fn synthetic_category(n: usize) -> Icd10Code {
    const THIRD: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let per_letter = 10 * THIRD.len();
    let n = n % (4 * per_letter);
    let letter = b"VWXY"[n / per_letter];
    let rest = n % per_letter;
    let code = [
        letter,
        b'0' + (rest / THIRD.len()) as u8,
        THIRD[rest % THIRD.len()],
    ];
    let text = String::from_utf8_lossy(&code).into_owned();
    Icd10Code::parse(&text).unwrap_or_else(|e| panic!("synthetic category {text}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_catalogue_keeps_the_originals_reachable() {
        let base = Catalogue::shipped();
        let big = scaled_catalogue(&base, 100);
        assert_eq!(big.cancers().len(), base.cancers().len() * 100);
        assert_eq!(big.regimens().len(), base.regimens().len() * 100);
        let breast = Icd10Code::parse("C50.911").unwrap();
        assert_eq!(big.cancer_for_diagnosis(&breast).unwrap().id, "breast");
        let copy = big.cancer("breast-x7").unwrap();
        assert_eq!(
            big.cancer_for_diagnosis(&copy.icd10[0].from).unwrap().id,
            "breast-x7"
        );
        for cancer in big.cancers() {
            for s in &cancer.situations {
                for (id, &i) in s.regimen_ids.iter().zip(&s.regimen_index) {
                    assert_eq!(&big.regimens()[i].id, id);
                }
            }
        }
    }
}
