//! The program's satisfaction rate: the share of ratings of 4 or 5 among the ratings
//! given in a period.

use serde::Serialize;

/// Satisfaction over a period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SatisfactionReport {
    pub ratings: u32,
    pub satisfied: u32,
    /// `satisfied / ratings`, 0 when nobody rated.
    pub rate: f64,
    pub average: f64,
    /// How many ratings of 1, 2, 3, 4 and 5.
    pub distribution: [u32; 5],
}

/// Summarises ratings (each 1 to 5; others are ignored as unreadable).
pub fn report(ratings: impl IntoIterator<Item = u8>) -> SatisfactionReport {
    let mut distribution = [0_u32; 5];
    for r in ratings {
        if (1..=5).contains(&r) {
            distribution[usize::from(r - 1)] += 1;
        }
    }
    let total: u32 = distribution.iter().sum();
    let satisfied = distribution[3] + distribution[4];
    let sum: u32 = distribution
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u32 + 1) * n)
        .sum();
    let ratio = |a: u32| {
        if total == 0 {
            0.0
        } else {
            f64::from(a) / f64::from(total)
        }
    };
    SatisfactionReport {
        ratings: total,
        satisfied,
        rate: ratio(satisfied),
        average: ratio(sum),
        distribution,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_and_five_count_as_satisfied() {
        let r = report([5, 4, 3, 5, 1]);
        assert_eq!((r.ratings, r.satisfied), (5, 3));
        assert!((r.rate - 0.6).abs() < 1e-9);
        assert!((r.average - 3.6).abs() < 1e-9);
        assert_eq!(r.distribution, [1, 0, 1, 1, 2]);
    }

    #[test]
    fn no_ratings_is_a_zero_report() {
        let r = report([]);
        assert_eq!((r.ratings, r.rate, r.average), (0, 0.0, 0.0));
    }
}
