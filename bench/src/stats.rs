//! Ratios over rounds: the median and the spread (lowest to highest round).

/// One comparison's per-round ratios, arm over baseline.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    pub fn push(&mut self, arm: f64, baseline: f64) {
        if baseline > 0.0 {
            self.0.push(arm / baseline);
        }
    }

    #[must_use]
    pub fn median(&self) -> f64 {
        median(&self.0)
    }

    #[must_use]
    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }

    #[must_use]
    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
#[must_use]
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[mid - 1], sorted[mid])
    } else {
        sorted[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_skip_an_empty_baseline_and_keep_the_spread() {
        let mut r = Ratios::default();
        r.push(90.0, 100.0);
        r.push(1.0, 0.0);
        r.push(110.0, 100.0);
        r.push(95.0, 100.0);
        assert_eq!(r.0.len(), 3);
        assert!((r.median() - 0.95).abs() < 1e-12);
        assert!((r.min() - 0.9).abs() < 1e-12);
        assert!((r.max() - 1.1).abs() < 1e-12);
    }
}
