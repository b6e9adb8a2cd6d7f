//! Samples, medians, ratios and markdown tables.
//!
//! Every comparison in this crate is a ratio of two medians measured in the
//! same run, with the two sides interleaved sample by sample, so that the
//! noise of a shared machine hits both sides alike.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Durations of repeated runs of one thing.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Record one duration.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Run `f` once, recording how long it took, and return its result.
    pub fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0.push(start.elapsed());
        out
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The median, in seconds (0 without samples).
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// The `q` quantile (nearest rank), in seconds.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v: Vec<f64> = self.0.iter().map(Duration::as_secs_f64).collect();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// The median of `v` (the mean of the middle two for an even count; 0
/// when empty): how a figure over several runs is summarised.
pub fn median_of(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The smallest and largest of `v` (`(0, 0)` when empty).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold(None, |acc: Option<(f64, f64)>, &x| {
            Some(acc.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))))
        })
        .unwrap_or((0.0, 0.0))
}

/// Run medians as `median (min–max)`, each printed by `show`; just the
/// median when there is one run.
pub fn spread(v: &[f64], show: impl Fn(f64) -> String) -> String {
    let (lo, hi) = min_max(v);
    if v.len() > 1 {
        format!("{} ({}–{})", show(median_of(v)), show(lo), show(hi))
    } else {
        show(median_of(v))
    }
}

/// A duration in seconds, printed with a unit that suits it.
pub fn secs(s: f64) -> String {
    if s == 0.0 {
        "0".into()
    } else if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// A ratio `a / b` printed as `1.23x` (`-` when undefined).
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 || a <= 0.0 {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// Bytes as a short human string (decimal units, like the sizes named).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} KB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Kibibytes (as the kernel reports RSS) as MiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// An integer with thousands separators.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `met` / `MISSED` for a budget check.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// A markdown table built row by row.
#[derive(Debug, Clone)]
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles. A title starting with `>` is
    /// right-aligned (the `>` is not printed).
    pub fn new(head: &[&str]) -> Self {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells are left empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as markdown.
    pub fn render(&self) -> String {
        let mut s = String::from("|");
        for h in &self.head {
            let _ = write!(s, " {} |", h.trim_start_matches('>'));
        }
        s.push_str("\n|");
        for h in &self.head {
            s.push_str(if h.starts_with('>') { "---:|" } else { "---|" });
        }
        s.push('\n');
        for r in &self.rows {
            s.push('|');
            for i in 0..self.head.len() {
                let _ = write!(s, " {} |", r.get(i).map(String::as_str).unwrap_or(""));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        let mut s = Samples::default();
        for ms in [5, 1, 3, 2, 4] {
            s.push(Duration::from_millis(ms));
        }
        assert!((s.median() - 0.003).abs() < 1e-12);
        assert!((s.quantile(1.0) - 0.005).abs() < 1e-12);
        assert_eq!(Samples::default().median(), 0.0);
        assert_eq!(median_of(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_of(&[]), 0.0);
        assert_eq!(min_max(&[2.0, 5.0, 1.0]), (1.0, 5.0));
        assert_eq!(
            spread(&[0.002, 0.001, 0.003], secs),
            "2.00 ms (1.00 ms–3.00 ms)"
        );
        assert_eq!(spread(&[0.002], secs), "2.00 ms");
    }

    #[test]
    fn formats() {
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(ratio(3.0, 2.0), "1.50x");
        assert_eq!(ratio(1.0, 0.0), "-");
        assert_eq!(secs(0.0025), "2.50 ms");
        let mut t = Table::new(&["a", ">b"]);
        t.row(vec!["x".into(), "1".into()]);
        assert_eq!(t.render(), "| a | b |\n|---|---:|\n| x | 1 |\n");
    }
}
