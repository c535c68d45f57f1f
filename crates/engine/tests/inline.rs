//! Running a record at once (`Engine::fetched_inline`): when it may, and what each way a run ends
//! leaves behind. The model tests (`model.rs`) drive it among every other event; these pin down
//! the rules one at a time.

use kafkaesque_engine::*;

fn engine(max_in_flight: usize) -> (Engine<u64>, PartitionHandle) {
    let mut cfg = EngineConfig::<u64>::default();
    cfg.limits.max_in_flight = max_in_flight;
    let mut e = Engine::new(cfg).unwrap();
    let (h, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
    (e, h)
}

/// Offsets and attempts of the dispatches waiting in the engine's actions.
fn dispatched(e: &mut Engine<u64>) -> Vec<(WorkId, u64, u32)> {
    e.drain_actions()
        .filter_map(|a| match a {
            Action::Dispatch(w) => Some((w.id, w.payload, w.attempt)),
            _ => None,
        })
        .collect()
}

fn watermark(e: &mut Engine<u64>) -> Option<Offset> {
    e.commits().last().map(|c| c.offset)
}

#[test]
fn a_record_of_an_idle_key_runs_at_once_and_completes_its_offset() {
    let (mut e, h) = engine(8);
    let Inline::Run(run) = e.fetched_inline(h, 0, 10, b"k", 0) else {
        panic!("an idle key with capacity runs at once");
    };
    assert_eq!(*run.payload(), 0);
    run.done();
    assert_eq!(watermark(&mut e), Some(1));
    assert_eq!(e.held(), (0, 0));
    assert_eq!(e.in_flight(), 0);
    assert!(dispatched(&mut e).is_empty());
}

#[test]
fn a_key_with_an_item_running_waits_its_turn() {
    let (mut e, h) = engine(8);
    let Inline::Run(run) = e.fetched_inline(h, 0, 10, b"k", 0) else {
        panic!("an idle key runs at once");
    };
    let first = run.running();
    assert_eq!(e.in_flight(), 1);
    // The same key again: queued behind the running item, not run.
    assert!(matches!(
        e.fetched_inline(h, 1, 10, b"k", 1),
        Inline::Taken(Intake::Accepted)
    ));
    assert!(dispatched(&mut e).is_empty());
    // Another key is free to run meanwhile.
    let Inline::Run(other) = e.fetched_inline(h, 2, 10, b"j", 2) else {
        panic!("another idle key runs at once");
    };
    other.done();
    assert_eq!(watermark(&mut e), Some(0));
    assert_eq!(e.complete(first), Outcome::Applied);
    let next = dispatched(&mut e);
    assert_eq!(next.iter().map(|d| d.1).collect::<Vec<_>>(), vec![1]);
    assert_eq!(e.complete(next[0].0), Outcome::Applied);
    assert_eq!(watermark(&mut e), Some(3));
}

#[test]
fn nothing_runs_at_once_past_capacity_or_ahead_of_work_that_waits_for_it() {
    let (mut e, h) = engine(1);
    let Inline::Run(run) = e.fetched_inline(h, 0, 10, b"a", 0) else {
        panic!("capacity is free");
    };
    let a = run.running();
    // No capacity: queued, and ready to start once there is.
    assert!(matches!(
        e.fetched_inline(h, 1, 10, b"b", 1),
        Inline::Taken(Intake::Accepted)
    ));
    assert_eq!(e.complete(a), Outcome::Applied);
    let started = dispatched(&mut e);
    assert_eq!(started.iter().map(|d| d.1).collect::<Vec<_>>(), vec![1]);
    // `b` runs and `c` is queued behind the capacity; when `b` finishes, `c` starts before a
    // newer record `d` of an idle key could jump ahead of it.
    assert!(matches!(
        e.fetched_inline(h, 2, 10, b"c", 2),
        Inline::Taken(Intake::Accepted)
    ));
    assert_eq!(e.complete(started[0].0), Outcome::Applied);
    assert!(matches!(
        e.fetched_inline(h, 3, 10, b"d", 3),
        Inline::Taken(Intake::Accepted)
    ));
    let order: Vec<u64> = dispatched(&mut e).iter().map(|d| d.1).collect();
    assert_eq!(order, vec![2]);
}

#[test]
fn a_run_that_fails_is_retried_like_any_other_item() {
    let (mut e, h) = engine(8);
    let Inline::Run(run) = e.fetched_inline(h, 0, 10, b"k", 7) else {
        panic!("an idle key runs at once");
    };
    assert_eq!(run.fail(Failure::Retry("boom".into())), Outcome::Applied);
    assert!(dispatched(&mut e).is_empty(), "it waits out its back-off");
    // Its key waits with it.
    assert!(matches!(
        e.fetched_inline(h, 1, 10, b"k", 8),
        Inline::Taken(Intake::Accepted)
    ));
    e.advance_time(60_000);
    let retried = dispatched(&mut e);
    assert_eq!(
        retried.iter().map(|d| (d.1, d.2)).collect::<Vec<_>>(),
        vec![(7, 2)]
    );
    assert_eq!(e.complete(retried[0].0), Outcome::Applied);
    let next = dispatched(&mut e);
    assert_eq!(next.iter().map(|d| d.1).collect::<Vec<_>>(), vec![8]);
}

#[test]
fn a_run_dropped_unreported_is_dispatched_as_usual() {
    let (mut e, h) = engine(8);
    let Inline::Run(run) = e.fetched_inline(h, 0, 10, b"k", 5) else {
        panic!("an idle key runs at once");
    };
    drop(run);
    let queued = dispatched(&mut e);
    assert_eq!(queued.iter().map(|d| d.1).collect::<Vec<_>>(), vec![5]);
    assert_eq!(e.counters().dispatched, 1);
    assert_eq!(e.complete(queued[0].0), Outcome::Applied);
    assert_eq!(watermark(&mut e), Some(1));
}

#[test]
fn other_orderings_never_run_at_once() {
    for ordering in [ProcessingOrder::Partition, ProcessingOrder::Unordered] {
        let cfg = EngineConfig::<u64> {
            ordering,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(cfg).unwrap();
        let (h, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
        assert!(matches!(
            e.fetched_inline(h, 0, 10, b"k", 0),
            Inline::Taken(Intake::Accepted)
        ));
        assert_eq!(dispatched(&mut e).len(), 1);
    }
}
