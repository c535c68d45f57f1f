//! A refused record handed back: what a caller that keeps records (rather than seek back and
//! fetch them again) relies on.

use kafkaesque_engine::*;

#[test]
fn the_record_refused_for_a_limit_comes_back_once_and_a_refusal_while_paused_gives_none() {
    let mut cfg = EngineConfig::<u64>::default();
    cfg.limits.partition_max_records = 2;
    let mut e = Engine::new(cfg).unwrap();
    let (h, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
    for o in 0..2 {
        let key = Some(format!("k{o}"));
        assert_eq!(e.fetched(h, o, 10, [(key, o as u64)]), Intake::Accepted);
        assert_eq!(e.take_refused(), None);
    }
    assert_eq!(e.fetched(h, 2, 10, [(Some("k2"), 2)]), Intake::Refused);
    let paused: Vec<i64> = e
        .drain_actions()
        .filter_map(|a| match a {
            Action::Pause { seek_to, .. } => Some(seek_to),
            _ => None,
        })
        .collect();
    assert_eq!(paused, vec![2]);
    assert_eq!(e.take_refused(), Some(2));
    assert_eq!(e.take_refused(), None);
    assert_eq!(e.resume_at(h), Some(2));
    // Paused already: refused without a new pause, and nothing to hand back (the record at
    // `seek_to` is the one to offer again, not this one).
    assert_eq!(e.fetched(h, 3, 10, [(Some("k3"), 3)]), Intake::Refused);
    assert_eq!(e.take_refused(), None);
    assert!(e
        .drain_actions()
        .all(|a| !matches!(a, Action::Pause { .. })));
    assert_eq!(e.resume_at(h), Some(2));
}

#[test]
fn a_partition_that_is_not_paused_has_no_resume_offset() {
    let mut e = Engine::<u64>::new(EngineConfig::default()).unwrap();
    let (h, _) = e.assign(TopicPartition::new("t", 0), 0, None, Role::Main);
    assert_eq!(e.resume_at(h), None);
    assert_eq!(e.fetched(h, 0, 10, [(Some("k"), 0)]), Intake::Accepted);
    assert_eq!(e.resume_at(h), None);
}
