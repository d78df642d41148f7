//! Health check results through the log: anti-flap thresholds, what is skipped, the last
//! result per service, and what an update of the check does.

use super::*;

fn checked(id: &str) -> NewService {
    let mut new = svc(id);
    new.health_check_url = Some("http://10.0.0.1:8080/health".into());
    new
}

fn result(id: &str, at_ms: u64, ok: bool) -> CheckResult {
    let error = (!ok).then(|| "HTTP 503 Service Unavailable".to_owned());
    CheckResult { id: sid(id), at_ms, ok, latency_ms: 7, error }
}

fn report(reg: &mut Registry, results: Vec<CheckResult>) -> (Vec<ServiceId>, Vec<ServiceId>, Vec<Event>) {
    let applied = run(reg, Command::HealthChecked { results }).expect("health_checked");
    match applied.outcome {
        Outcome::HealthChecked { changed, skipped } => (changed, skipped, applied.events),
        other => panic!("health_checked answered {other:?}"),
    }
}

#[test]
fn three_failures_make_a_service_unhealthy_and_two_passes_make_it_active_again() {
    // Proves the default thresholds (3 and 2), the events at each change, and nothing between.
    let mut reg = Registry::new(100);
    register(&mut reg, checked("a"), T0);
    for i in 1..=2 {
        let (changed, _, events) = report(&mut reg, vec![result("a", T0 + i * 1_000, false)]);
        assert!(changed.is_empty() && events.is_empty(), "failure {i} of 3 changes nothing");
        assert_eq!(status(&reg, "a"), Status::Active);
    }
    let (changed, _, events) = report(&mut reg, vec![result("a", T0 + 3_000, false)]);
    assert_eq!(changed, [sid("a")]);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].service.status),
        (EventKind::HealthStatusChanged, Status::Unhealthy)
    );
    let a = reg.get(&sid("a")).unwrap();
    assert_eq!(a.updated_at_ms, T0 + 3_000);
    let last = a.last_health_check.clone().unwrap();
    assert_eq!((last.ok, last.consecutive_failures, last.latency_ms), (false, 3, 7));
    assert_eq!(last.error.as_deref(), Some("HTTP 503 Service Unavailable"));

    let (changed, _, _) = report(&mut reg, vec![result("a", T0 + 4_000, true)]);
    assert!(changed.is_empty(), "one pass of 2 keeps it unhealthy");
    let (changed, _, events) =
        report(&mut reg, vec![result("a", T0 + 5_000, false), result("a", T0 + 6_000, true)]);
    assert!(changed.is_empty() && events.is_empty(), "a failure in between restarts the run");
    let (changed, _, events) = report(&mut reg, vec![result("a", T0 + 7_000, true)]);
    assert_eq!(changed, [sid("a")]);
    assert_eq!(events[0].service.status, Status::Active);
    let last = reg.get(&sid("a")).unwrap().last_health_check.clone().unwrap();
    assert_eq!(
        (last.ok, last.consecutive_successes, last.consecutive_failures, last.error),
        (true, 2, 0, None)
    );
}

#[test]
fn per_service_thresholds_of_one_flip_at_once() {
    // Proves the thresholds are the service's own.
    let mut reg = Registry::new(100);
    let mut new = checked("a");
    new.health_check_unhealthy_threshold = 1;
    new.health_check_healthy_threshold = 1;
    register(&mut reg, new, T0);
    assert_eq!(report(&mut reg, vec![result("a", T0 + 1, false)]).0, [sid("a")]);
    assert_eq!(status(&reg, "a"), Status::Unhealthy);
    assert_eq!(report(&mut reg, vec![result("a", T0 + 2, true)]).0, [sid("a")]);
    assert_eq!(status(&reg, "a"), Status::Active);
}

#[test]
fn results_for_gone_unchecked_inactive_or_older_checks_are_skipped() {
    // Proves what apply ignores, and that the revision still moves (the entry was applied).
    let mut reg = Registry::new(100);
    register(&mut reg, checked("a"), T0);
    register(&mut reg, svc("plain"), T0);
    register(&mut reg, checked("off"), T0);
    let patch = ServicePatch { status: Some(Status::Inactive), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("off"), patch, now_ms: T0 }).unwrap();
    report(&mut reg, vec![result("a", T0 + 5_000, false)]);
    let before = reg.revision();
    let (changed, skipped, events) = report(
        &mut reg,
        vec![
            result("gone", T0, false),
            result("plain", T0, false),
            result("off", T0, false),
            result("a", T0 + 4_000, true),
        ],
    );
    assert!(changed.is_empty() && events.is_empty());
    assert_eq!(skipped, [sid("gone"), sid("plain"), sid("off"), sid("a")]);
    assert!(reg.revision() > before);
    let last = reg.get(&sid("a")).unwrap().last_health_check.clone().unwrap();
    assert_eq!((last.at_ms, last.ok), (T0 + 5_000, false), "an older result does not overwrite a newer one");
    assert!(reg.get(&sid("off")).unwrap().last_health_check.is_none());
}

#[test]
fn a_new_check_url_starts_over_and_removing_the_check_ends_unhealthy() {
    // Proves an update of health_check_url resets the record and the status it caused.
    let mut reg = Registry::new(100);
    let mut new = checked("a");
    new.health_check_unhealthy_threshold = 1;
    register(&mut reg, new, T0);
    report(&mut reg, vec![result("a", T0 + 1, false)]);
    assert_eq!(status(&reg, "a"), Status::Unhealthy);
    let patch = ServicePatch { health_check_interval: Some(10), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 + 2 }).unwrap();
    assert_eq!(status(&reg, "a"), Status::Unhealthy, "other check settings keep the record");
    let patch = ServicePatch { health_check_url: Some(None), ..Default::default() };
    let applied = run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 + 3 }).unwrap();
    let a = reg.get(&sid("a")).unwrap();
    assert_eq!((a.status, a.last_health_check.is_none()), (Status::Active, true));
    assert_eq!(applied.events[0].kind, EventKind::ServiceUpdated);
}

#[test]
fn a_malformed_batch_is_refused_whole() {
    // Proves the bounds on a batch: error text length, ok/error agreement; nothing applied.
    let mut reg = Registry::new(100);
    register(&mut reg, checked("a"), T0);
    let before = reg.clone();
    let mut long = result("a", T0, false);
    long.error = Some("e".repeat(crate::registry::validate::CHECK_ERROR_CHARS_MAX + 1));
    let err =
        run(&mut reg, Command::HealthChecked { results: vec![result("a", T0, false), long] }).unwrap_err();
    assert!(err.to_string().contains("check error must be at most 300 characters"), "{err}");
    let mut both = result("a", T0, true);
    both.error = Some("x".into());
    let err = run(&mut reg, Command::HealthChecked { results: vec![both] }).unwrap_err();
    assert!(err.to_string().contains("exactly when it failed"), "{err}");
    assert_eq!(reg, before, "a refused batch changes nothing, not even the revision");
}
