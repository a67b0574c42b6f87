//! The rise/fall state machine of one backend: `fall` failures in a row take
//! it down, `rise` passes in a row bring it back up. It also keeps the last
//! result, a short history of state changes and counts. Pure: time comes in
//! with each result, so the tests drive it with a fake clock.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::{CheckCounts, CheckResult, HealthState, Outcome, Transition, HISTORY_LEN};

#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    state: HealthState,
    since: SystemTime,
    passes_in_row: u32,
    failures_in_row: u32,
    last_result: Option<CheckResult>,
    history: VecDeque<Transition>,
    counts: CheckCounts,
}

impl Tracker {
    /// A backend starts up, as tula-control starts every backend healthy:
    /// `fall` failures take a dead one out.
    pub(crate) fn new(now: SystemTime) -> Tracker {
        Tracker {
            state: HealthState::Up,
            since: now,
            passes_in_row: 0,
            failures_in_row: 0,
            last_result: None,
            history: VecDeque::with_capacity(HISTORY_LEN),
            counts: CheckCounts::default(),
        }
    }

    pub(crate) fn state(&self) -> HealthState {
        self.state
    }

    pub(crate) fn since(&self) -> SystemTime {
        self.since
    }

    pub(crate) fn last_result(&self) -> Option<&CheckResult> {
        self.last_result.as_ref()
    }

    pub(crate) fn counts(&self) -> CheckCounts {
        self.counts
    }

    /// Oldest first.
    pub(crate) fn history(&self) -> impl Iterator<Item = &Transition> {
        self.history.iter()
    }

    /// Takes one result; returns the state change it completes, if any.
    /// An [`Outcome::Error`] (the probe could not be sent) breaks no streak.
    pub(crate) fn record(
        &mut self,
        result: CheckResult,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        let next = match result.outcome {
            Outcome::Pass => {
                self.counts.passed += 1;
                self.failures_in_row = 0;
                self.passes_in_row = self.passes_in_row.saturating_add(1);
                (self.state == HealthState::Down && self.passes_in_row >= rise)
                    .then_some(HealthState::Up)
            }
            Outcome::Fail => {
                self.counts.failed += 1;
                self.passes_in_row = 0;
                self.failures_in_row = self.failures_in_row.saturating_add(1);
                (self.state == HealthState::Up && self.failures_in_row >= fall)
                    .then_some(HealthState::Down)
            }
            Outcome::Error => {
                self.counts.errors += 1;
                None
            }
        };
        let transition = next.map(|to| Transition {
            time: result.time,
            from: self.state,
            to,
            cause: result.clone(),
        });
        self.last_result = Some(result);
        let transition = transition?;
        match transition.to {
            HealthState::Up => self.counts.went_up += 1,
            HealthState::Down => self.counts.went_down += 1,
        }
        self.state = transition.to;
        self.since = transition.time;
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(transition.clone());
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64, outcome: Outcome) -> CheckResult {
        CheckResult {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            outcome,
            detail: format!("{outcome:?} at {seconds}s"),
            took: Duration::from_millis(1),
        }
    }

    /// Feeds outcomes one per second from t=1; returns (time, new state) of each change.
    fn run(tracker: &mut Tracker, outcomes: &str, rise: u32, fall: u32) -> Vec<(u64, HealthState)> {
        let mut changes = Vec::new();
        for (i, c) in outcomes.chars().enumerate() {
            let outcome = match c {
                'p' => Outcome::Pass,
                'f' => Outcome::Fail,
                _ => Outcome::Error,
            };
            let t = i as u64 + 1;
            if let Some(change) = tracker.record(at(t, outcome), rise, fall) {
                changes.push((t, change.to));
            }
        }
        changes
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_and_rise_passes_bring_it_up() {
        let mut tracker = Tracker::new(SystemTime::UNIX_EPOCH);
        assert_eq!(tracker.state(), HealthState::Up, "every backend starts up");
        // fall = 3: two failures then a pass reset the streak; three in a row go down.
        let changes = run(&mut tracker, "ffpfff", 2, 3);
        assert_eq!(changes, vec![(6, HealthState::Down)]);
        // rise = 2: a pass then a failure reset it; two in a row come back.
        let changes = run(&mut tracker, "pfpp", 2, 3);
        assert_eq!(changes, vec![(4, HealthState::Up)]);
        let counts = tracker.counts();
        assert_eq!((counts.passed, counts.failed, counts.errors), (4, 6, 0));
        assert_eq!((counts.went_down, counts.went_up), (1, 1));
    }

    #[test]
    fn errors_break_no_streak() {
        let mut tracker = Tracker::new(SystemTime::UNIX_EPOCH);
        assert_eq!(
            run(&mut tracker, "ffeef", 2, 3),
            vec![(5, HealthState::Down)]
        );
        assert_eq!(run(&mut tracker, "pep", 2, 3), vec![(3, HealthState::Up)]);
        assert_eq!(tracker.counts().errors, 3);
        assert_eq!(tracker.last_result().unwrap().outcome, Outcome::Pass);
    }

    #[test]
    fn rise_and_fall_of_one_act_at_once() {
        let mut tracker = Tracker::new(SystemTime::UNIX_EPOCH);
        assert_eq!(
            run(&mut tracker, "fpfp", 1, 1),
            vec![
                (1, HealthState::Down),
                (2, HealthState::Up),
                (3, HealthState::Down),
                (4, HealthState::Up),
            ]
        );
    }

    #[test]
    fn history_records_the_cause_and_keeps_the_latest() {
        let mut tracker = Tracker::new(SystemTime::UNIX_EPOCH);
        run(&mut tracker, "fff", 1, 3);
        let first = tracker.history().next().unwrap().clone();
        assert_eq!((first.from, first.to), (HealthState::Up, HealthState::Down));
        assert_eq!(
            first.cause.detail, "Fail at 3s",
            "the result that completed the fall"
        );
        assert_eq!(first.time, SystemTime::UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!(tracker.since(), first.time);

        // Flapping 20 times keeps only the latest HISTORY_LEN changes.
        let mut tracker = Tracker::new(SystemTime::UNIX_EPOCH);
        let changes = run(&mut tracker, &"fp".repeat(10), 1, 1);
        assert_eq!(changes.len(), 20);
        let kept: Vec<_> = tracker.history().collect();
        assert_eq!(kept.len(), HISTORY_LEN);
        assert_eq!(
            kept.last().unwrap().time,
            SystemTime::UNIX_EPOCH + Duration::from_secs(20)
        );
        assert_eq!(
            kept[0].time,
            SystemTime::UNIX_EPOCH + Duration::from_secs(5)
        );
    }
}
