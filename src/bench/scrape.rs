//! Where a bench's server spent its time, from the server's own `/metrics` (Prometheus text):
//! histogram deltas between two scrapes, so a report can say which part of a request or a job
//! step the tail came from. Bucket bounds are the server's (`telemetry::init_metrics`), so a
//! quantile is reported as the bound of the bucket it falls in ("≤ 25 ms"), never interpolated.
//!
//! Hand-written: a few lines of the exposition format's histogram series are all it needs;
//! a full Prometheus parser crate would bring more than it saves.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

/// Cumulative bucket counts of every histogram series: series key (name and labels other than
/// `le`, as written) → (upper bound → cumulative count).
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    buckets: BTreeMap<String, Vec<(f64, f64)>>,
    sums: BTreeMap<String, f64>,
}

/// One histogram over the interval between two scrapes.
#[derive(Debug, Clone)]
pub struct Interval {
    pub count: f64,
    pub mean_s: f64,
    buckets: Vec<(f64, f64)>,
}

impl Interval {
    /// The upper bound of the bucket holding quantile `q` (infinite past the last bound).
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let want = (q * self.count).ceil().max(1.0);
        self.buckets
            .iter()
            .find(|(_, c)| *c >= want)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }

    /// The share of observations above `bound` (which should be one of the bucket bounds).
    pub fn share_above(&self, bound: f64) -> f64 {
        let at_most = self
            .buckets
            .iter()
            .filter(|(le, _)| *le <= bound)
            .map(|(_, c)| *c)
            .fold(0.0, f64::max);
        if self.count > 0.0 {
            (self.count - at_most) / self.count
        } else {
            0.0
        }
    }
}

impl Scrape {
    /// Reads `base/metrics`.
    pub async fn fetch(client: &reqwest::Client, base: &str) -> Result<Self> {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self::parse(&text))
    }

    /// Parses the histogram series (`_bucket` and `_sum` lines) of an exposition.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match (series.find('{'), series.rfind('}')) {
                (Some(open), Some(close)) if close > open => {
                    (&series[..open], &series[open + 1..close])
                }
                _ => (series, ""),
            };
            if let Some(base) = name.strip_suffix("_bucket") {
                let mut le = None;
                let mut rest = Vec::new();
                for label in split_labels(labels) {
                    match label.strip_prefix("le=") {
                        Some(v) => le = Some(v.trim_matches('"').to_owned()),
                        None => rest.push(label),
                    }
                }
                let Some(le) = le else { continue };
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse::<f64>() {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                let key = format!("{base}{{{}}}", rest.join(","));
                out.buckets.entry(key).or_default().push((bound, value));
            } else if let Some(base) = name.strip_suffix("_sum") {
                out.sums.insert(format!("{base}{{{labels}}}"), value);
            }
        }
        for b in out.buckets.values_mut() {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
        out
    }

    /// The histogram `name` with exactly `labels` (`key="value"` pairs in the order the
    /// exporter writes them), over the interval from `before` to this scrape.
    pub fn since(&self, before: &Self, name: &str, labels: &[(&str, &str)]) -> Result<Interval> {
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let after = self
            .buckets
            .get(&key)
            .with_context(|| format!("no histogram {key} in the server's metrics"))?;
        let earlier = before.buckets.get(&key);
        let buckets: Vec<(f64, f64)> = after
            .iter()
            .map(|&(le, c)| {
                let was = earlier
                    .and_then(|b| b.iter().find(|(l, _)| *l == le))
                    .map_or(0.0, |(_, c)| *c);
                (le, c - was)
            })
            .collect();
        let count = buckets.last().map_or(0.0, |(_, c)| *c);
        let sum = self.sums.get(&key).copied().unwrap_or(0.0)
            - before.sums.get(&key).copied().unwrap_or(0.0);
        Ok(Interval {
            count,
            mean_s: if count > 0.0 { sum / count } else { 0.0 },
            buckets,
        })
    }
}

/// Splits `a="x",b="y,z"` at the commas between labels (not those inside quoted values).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, ch) in labels.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# TYPE philo_x_seconds histogram
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="0.001"} 1
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="0.01"} 2
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="+Inf"} 2
philo_x_seconds_sum{route="/v1/users/{id}",method="GET"} 0.006
philo_x_seconds_count{route="/v1/users/{id}",method="GET"} 2
"#;

    const AFTER: &str = r#"# TYPE philo_x_seconds histogram
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="0.001"} 51
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="0.01"} 100
philo_x_seconds_bucket{route="/v1/users/{id}",method="GET",le="+Inf"} 102
philo_x_seconds_sum{route="/v1/users/{id}",method="GET"} 0.306
philo_x_seconds_count{route="/v1/users/{id}",method="GET"} 102
"#;

    #[test]
    fn an_interval_is_the_difference_of_two_scrapes() {
        let (before, after) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        let labels = [("route", "/v1/users/{id}"), ("method", "GET")];
        let i = after.since(&before, "philo_x_seconds", &labels).unwrap();
        assert_eq!(i.count, 100.0);
        assert!((i.mean_s - 0.003).abs() < 1e-12);
        // 50 of the 100 at most 1 ms, 98 at most 10 ms, two beyond.
        assert_eq!(i.quantile_bound(0.5), 0.001);
        assert_eq!(i.quantile_bound(0.51), 0.01);
        assert_eq!(i.quantile_bound(0.99), f64::INFINITY);
        assert!((i.share_above(0.001) - 0.5).abs() < 1e-12);
        assert!((i.share_above(0.01) - 0.02).abs() < 1e-12);
        assert!(after.since(&before, "philo_x_seconds", &[]).is_err());
    }

    #[test]
    fn commas_inside_quoted_values_do_not_split_labels() {
        assert_eq!(
            split_labels(r#"a="x,y",b="z\"",le="1""#),
            vec![r#"a="x,y""#, r#"b="z\"""#, r#"le="1""#]
        );
    }
}
