//! A hot key under `Divert`, step by step: the barrier, the flush to the overflow, and the way
//! back to the main path.

use kafkaesque_engine::*;

fn engine() -> (Engine<u64>, PartitionHandle, PartitionHandle) {
    let mut cfg = EngineConfig::<u64> {
        hot_key: HotKeyPolicy::Divert,
        ..EngineConfig::default()
    };
    cfg.limits.key_max_records = 4;
    let mut e = Engine::new(cfg).unwrap();
    let (main, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
    let (ovf, _) = e.assign(
        TopicPartition::new("t.overflow", 0),
        0,
        None,
        Role::Overflow { main },
    );
    (e, main, ovf)
}

fn actions(e: &mut Engine<u64>) -> Vec<Action<u64>> {
    e.drain_actions().collect()
}

#[test]
fn a_hot_key_waits_for_its_running_item_then_goes_to_the_overflow_and_comes_back() {
    let (mut e, main, ovf) = engine();
    let hot = Some(b"hot".to_vec());
    for o in 0..4 {
        assert_eq!(
            e.fetched(main, o, 10, [(hot.clone(), o as u64)]),
            Intake::Accepted
        );
    }
    let first = match actions(&mut e).remove(0) {
        Action::Dispatch(w) => w,
        a => panic!("{a:?}"),
    };
    // The key is full while its first item runs: the partition waits for that one item.
    assert_eq!(e.fetched(main, 4, 10, [(hot.clone(), 4)]), Intake::Refused);
    assert!(matches!(
        actions(&mut e)[..],
        [Action::Pause { seek_to: 4, .. }]
    ));
    // It finishes: the queued items go to the overflow, in order, and the partition resumes.
    e.complete(first.id);
    let a = actions(&mut e);
    let diverted: Vec<i64> = a
        .iter()
        .filter_map(|a| match a {
            Action::Divert(r) => Some(r.offset),
            _ => None,
        })
        .collect();
    assert_eq!(diverted, vec![1, 2, 3]);
    assert!(a.iter().any(|a| matches!(a, Action::Resume { .. })));
    // Later items go straight to the overflow, behind them.
    assert_eq!(e.fetched(main, 4, 10, [(hot.clone(), 4)]), Intake::Accepted);
    let four = match &actions(&mut e)[..] {
        [Action::Divert(r)] => r.clone(),
        a => panic!("{a:?}"),
    };
    for (i, r) in a
        .iter()
        .filter_map(|a| match a {
            Action::Divert(r) => Some(r),
            _ => None,
        })
        .chain([&four])
        .enumerate()
    {
        assert_eq!(e.sink_acked(r.id, Some(i as i64)), Outcome::Applied);
    }
    // The main partition's offsets are complete once the overflow has them.
    assert_eq!(e.commits()[0].offset, 5);
    // They come back through the overflow partition and run in order.
    for (i, r) in [1u64, 2, 3, 4].into_iter().enumerate() {
        assert_eq!(
            e.fetched_overflow(ovf, i as i64, hot.clone(), 10, r),
            Intake::Accepted
        );
    }
    let mut order = Vec::new();
    loop {
        let a = actions(&mut e);
        let Some(Action::Dispatch(w)) = a.into_iter().next() else {
            break;
        };
        order.push(w.payload);
        e.complete(w.id);
    }
    assert_eq!(order, vec![1, 2, 3, 4]);
    // Once the overflow is done, the key's next item runs from the main partition again.
    assert_eq!(e.fetched(main, 5, 10, [(hot, 5)]), Intake::Accepted);
    assert!(matches!(&actions(&mut e)[..], [Action::Dispatch(w)] if w.payload == 5));
}
