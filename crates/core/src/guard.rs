//! The guard's judgement (DESIGN §3.6): from what a guarded version did in its lookback window
//! (tagged jobs, health probes, the signals it reported) and what the previous version did in
//! its last window, one verdict per gate and one overall:
//!
//! * `failure_rate`: failed share of the version's finished jobs > `max_failure_rate`.
//! * `latency`: median run time of its completed jobs > `max_latency_ratio` × the previous
//!   version's (skipped without a baseline).
//! * `health`: the environment's probe has answered non-200 (errors and timeouts count) for
//!   longer than `health_grace` (skipped without a health URL).
//! * `signals`: the error share or the median latency the service reports, held to the same
//!   limits (skipped when it never reported).
//!
//! A gate with fewer than `min_samples` samples is `INCONCLUSIVE`: the guard holds, and never
//! passes on too little data. Overall: `FAIL` if any gate failed, else `INCONCLUSIVE` if any was,
//! else `PASS`. Pure: no clock, no I/O.

use chrono::{DateTime, Utc};
use switchyard_types::{GateResult, GuardSettings, ProbeResult, Verdict, VersionFigures};

/// What one evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct GuardInputs<'a> {
    /// The limits.
    pub settings: &'a GuardSettings,
    /// The guarded version's figures over the lookback window.
    pub current: &'a VersionFigures,
    /// The previous version's figures over its last window, when there is a previous version.
    pub baseline: Option<&'a VersionFigures>,
    /// The health probes' results in the window, oldest first; `None` without a health URL.
    pub probes: Option<&'a [ProbeResult]>,
    /// The instant of the evaluation.
    pub now: DateTime<Utc>,
}

/// Judges every gate; returns the overall verdict and each gate's result.
pub fn evaluate(inputs: &GuardInputs<'_>) -> (Verdict, Vec<GateResult>) {
    let gates = vec![
        failure_rate(inputs),
        latency(inputs),
        health(inputs),
        signals(inputs),
    ];
    (overall(&gates), gates)
}

/// `FAIL` if any gate failed, else `INCONCLUSIVE` if any was, else `PASS`.
pub fn overall(gates: &[GateResult]) -> Verdict {
    if gates.iter().any(|g| g.verdict == Verdict::Fail) {
        Verdict::Fail
    } else if gates.iter().any(|g| g.verdict == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// The median of `values`; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

fn result(
    gate: &str,
    verdict: Verdict,
    value: Option<f64>,
    limit: Option<f64>,
    samples: u64,
    detail: String,
) -> GateResult {
    GateResult {
        gate: gate.to_owned(),
        verdict,
        value,
        limit,
        samples,
        detail,
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A share judged against its limit once there are enough samples.
fn share_gate(gate: &str, what: &str, failed: u64, total: u64, s: &GuardSettings) -> GateResult {
    let limit = Some(s.max_failure_rate);
    if total < u64::from(s.min_samples) {
        return result(
            gate,
            Verdict::Inconclusive,
            None,
            limit,
            total,
            format!(
                "{gate}: {total} {what} in the window, {} needed to judge",
                s.min_samples
            ),
        );
    }
    let share = if total == 0 {
        0.0
    } else {
        failed as f64 / total as f64
    };
    let verdict = if share > s.max_failure_rate {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    result(
        gate,
        verdict,
        Some(share),
        limit,
        total,
        format!(
            "{gate}: {} of {total} {what} failed ({failed}; limit {})",
            percent(share),
            percent(s.max_failure_rate)
        ),
    )
}

/// A median judged against the baseline's.
fn ratio_gate(
    gate: &str,
    unit: &str,
    current: &[f64],
    baseline: Option<&[f64]>,
    s: &GuardSettings,
) -> GateResult {
    let limit = Some(s.max_latency_ratio);
    let samples = current.len() as u64;
    let Some(base) = baseline.and_then(median).filter(|b| *b > 0.0) else {
        return result(
            gate,
            Verdict::Skipped,
            None,
            limit,
            samples,
            format!("{gate}: no baseline from the previous version"),
        );
    };
    let Some(now) = median(current).filter(|_| samples >= u64::from(s.min_samples)) else {
        return result(
            gate,
            Verdict::Inconclusive,
            None,
            limit,
            samples,
            format!(
                "{gate}: {samples} samples in the window, {} needed to judge",
                s.min_samples
            ),
        );
    };
    let ratio = now / base;
    let verdict = if ratio > s.max_latency_ratio {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    result(
        gate,
        verdict,
        Some(ratio),
        limit,
        samples,
        format!(
            "{gate}: median {now:.3} {unit} is {:.0}% of the previous version's {base:.3} {unit} (limit {:.0}%)",
            ratio * 100.0,
            s.max_latency_ratio * 100.0
        ),
    )
}

fn failure_rate(i: &GuardInputs<'_>) -> GateResult {
    share_gate(
        "failure_rate",
        "jobs",
        i.current.jobs_failed,
        i.current.jobs_finished,
        i.settings,
    )
}

fn latency(i: &GuardInputs<'_>) -> GateResult {
    ratio_gate(
        "latency",
        "s",
        &i.current.run_seconds,
        i.baseline.map(|b| b.run_seconds.as_slice()),
        i.settings,
    )
}

fn health(i: &GuardInputs<'_>) -> GateResult {
    let grace = i.settings.health_grace.as_secs_f64();
    let Some(probes) = i.probes else {
        return result(
            "health",
            Verdict::Skipped,
            None,
            Some(grace),
            0,
            "health: the environment has no health URL".to_owned(),
        );
    };
    let samples = probes.len() as u64;
    let Some(last) = probes.last() else {
        return result(
            "health",
            Verdict::Inconclusive,
            None,
            Some(grace),
            0,
            "health: no probe has answered yet".to_owned(),
        );
    };
    if last.ok {
        return result(
            "health",
            Verdict::Pass,
            Some(0.0),
            Some(grace),
            samples,
            "health: the last probe answered 200".to_owned(),
        );
    }
    // The trailing run of failures: since the first of them, nothing answered 200.
    let first_failure = probes
        .iter()
        .rev()
        .take_while(|p| !p.ok)
        .last()
        .map_or(last.at, |p| p.at);
    let failing = (i.now - first_failure).as_seconds_f64().max(0.0);
    let verdict = if failing > grace {
        Verdict::Fail
    } else {
        // Unhealthy, but not for long enough to roll back: hold.
        Verdict::Inconclusive
    };
    result(
        "health",
        verdict,
        Some(failing),
        Some(grace),
        samples,
        format!("health: probe failing for {failing:.0} s (limit {grace:.0} s)"),
    )
}

fn signals(i: &GuardInputs<'_>) -> GateResult {
    let c = i.current;
    if !c.signals_seen {
        return result(
            "signals",
            Verdict::Skipped,
            None,
            None,
            0,
            "signals: the service reported none".to_owned(),
        );
    }
    let errors = share_gate(
        "signals",
        "requests",
        c.signal_errors,
        c.signal_requests,
        i.settings,
    );
    if errors.verdict != Verdict::Pass {
        return errors;
    }
    let latency = ratio_gate(
        "signals",
        "ms",
        &c.signal_latencies_ms,
        i.baseline.map(|b| b.signal_latencies_ms.as_slice()),
        i.settings,
    );
    match latency.verdict {
        Verdict::Fail | Verdict::Inconclusive => latency,
        Verdict::Pass | Verdict::Skipped => errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GuardSettings {
        GuardSettings {
            min_samples: 4,
            ..GuardSettings::default()
        }
    }

    fn jobs(finished: u64, failed: u64, runs: &[f64]) -> VersionFigures {
        VersionFigures {
            jobs_finished: finished,
            jobs_failed: failed,
            run_seconds: runs.to_vec(),
            ..VersionFigures::default()
        }
    }

    fn gate<'a>(gates: &'a [GateResult], name: &str) -> &'a GateResult {
        gates.iter().find(|g| g.gate == name).unwrap()
    }

    fn run(
        current: &VersionFigures,
        baseline: Option<&VersionFigures>,
        probes: Option<&[ProbeResult]>,
    ) -> (Verdict, Vec<GateResult>) {
        let s = settings();
        evaluate(&GuardInputs {
            settings: &s,
            current,
            baseline,
            probes,
            now: DateTime::from_timestamp(1_000, 0).unwrap(),
        })
    }

    #[test]
    fn no_data_is_inconclusive_never_a_pass() {
        let (verdict, gates) = run(&VersionFigures::default(), None, None);
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(gate(&gates, "failure_rate").verdict, Verdict::Inconclusive);
        assert_eq!(gate(&gates, "latency").verdict, Verdict::Skipped);
        assert_eq!(gate(&gates, "health").verdict, Verdict::Skipped);
        assert_eq!(gate(&gates, "signals").verdict, Verdict::Skipped);
    }

    #[test]
    fn the_failure_rate_gate_fails_above_five_percent() {
        let (verdict, gates) = run(&jobs(20, 1, &[1.0; 19]), None, None);
        assert_eq!(verdict, Verdict::Pass, "{gates:?}");
        let (verdict, gates) = run(&jobs(20, 2, &[1.0; 18]), None, None);
        assert_eq!(verdict, Verdict::Fail);
        let g = gate(&gates, "failure_rate");
        assert_eq!(g.value, Some(0.1));
        assert!(g.detail.contains("10.0%"), "{}", g.detail);
    }

    #[test]
    fn the_latency_gate_compares_medians_with_the_previous_version() {
        let base = jobs(5, 0, &[1.0, 1.0, 2.0, 1.0, 1.0]);
        let (verdict, _) = run(&jobs(4, 0, &[1.1, 1.0, 1.05, 1.1]), Some(&base), None);
        assert_eq!(verdict, Verdict::Pass);
        let (verdict, gates) = run(&jobs(4, 0, &[1.2, 1.3, 1.2, 1.25]), Some(&base), None);
        assert_eq!(verdict, Verdict::Fail);
        let g = gate(&gates, "latency");
        assert!((g.value.unwrap() - 1.225).abs() < 1e-9, "{g:?}");
        assert!(g.detail.contains("latency"), "{}", g.detail);
    }

    #[test]
    fn the_health_gate_fails_only_after_its_grace() {
        let at = |s: i64, ok: bool| ProbeResult {
            at: DateTime::from_timestamp(s, 0).unwrap(),
            ok,
        };
        let ok = jobs(10, 0, &[1.0; 10]);
        // Failing since 975 s: 25 s at 1000 s, within the 30 s grace.
        let probes = [at(960, true), at(975, false), at(990, false)];
        let (verdict, gates) = run(&ok, None, Some(&probes));
        assert_eq!(verdict, Verdict::Inconclusive);
        assert_eq!(gate(&gates, "health").value, Some(25.0));
        // Failing since 965 s: 35 s.
        let probes = [
            at(950, true),
            at(965, false),
            at(980, false),
            at(995, false),
        ];
        let (verdict, _) = run(&ok, None, Some(&probes));
        assert_eq!(verdict, Verdict::Fail);
        let probes = [at(965, false), at(995, true)];
        assert_eq!(run(&ok, None, Some(&probes)).0, Verdict::Pass);
        assert_eq!(run(&ok, None, Some(&[])).0, Verdict::Inconclusive);
    }

    #[test]
    fn reported_signals_are_held_to_the_same_limits() {
        let mut current = jobs(10, 0, &[1.0; 10]);
        current.signals_seen = true;
        current.signal_requests = 3;
        assert_eq!(run(&current, None, None).0, Verdict::Inconclusive);
        current.signal_requests = 1000;
        current.signal_errors = 80;
        let (verdict, gates) = run(&current, None, None);
        assert_eq!(verdict, Verdict::Fail);
        assert!(gate(&gates, "signals").detail.contains("8.0%"));
        current.signal_errors = 10;
        current.signal_latencies_ms = vec![130.0; 4];
        let mut base = VersionFigures {
            signal_latencies_ms: vec![100.0; 4],
            ..VersionFigures::default()
        };
        assert_eq!(run(&current, Some(&base), None).0, Verdict::Fail);
        base.signal_latencies_ms = vec![125.0; 4];
        assert_eq!(run(&current, Some(&base), None).0, Verdict::Pass);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
