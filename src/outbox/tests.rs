//! Unit tests of the outbox queue.

use super::*;

#[test]
fn bytes_held_in_flight_count_against_the_limit_until_released() {
    let mut q = OutboxQueue::new(Outbox::bounded(100).max_bytes(10));
    assert_eq!(q.push(msg(1, 6)), Pushed::Queued);
    let taken = q.take_for_flight().unwrap().message;
    assert!(
        matches!(q.push(msg(2, 6)), Pushed::Refused { .. }),
        "6 held + 6 > 10"
    );
    q.release(taken.len());
    assert_eq!(q.push(msg(2, 6)), Pushed::Queued);
    // DropOldest cannot drop what is in flight.
    let mut q = OutboxQueue::new(
        Outbox::bounded(100)
            .max_bytes(10)
            .on_overflow(Overflow::DropOldest),
    );
    q.push(msg(1, 8));
    q.take_for_flight();
    assert!(matches!(
        q.push(msg(2, 8)),
        Pushed::Refused { dropped: true, .. }
    ));
}

fn keyed(key: &str) -> Delivery {
    Delivery::new().collapse_key(key)
}

#[test]
fn a_newer_message_with_the_same_key_takes_the_older_ones_place() {
    let mut q = OutboxQueue::new(Outbox::bounded(10));
    q.push_with(Outgoing::from("a1"), &keyed("a"));
    q.push(Outgoing::from("x"));
    q.push_with(Outgoing::from("b1"), &keyed("b"));
    q.push_with(Outgoing::from("a2"), &keyed("a"));
    q.push_with(Outgoing::from("a3"), &keyed("a"));
    assert_eq!(q.take_collapsed(), 2);
    assert_eq!(q.bytes(), 5);
    assert_eq!(q.pop_front(), Some(Outgoing::from("a3")));
    // Once written, a key is free again: the next one queues at the back.
    q.push_with(Outgoing::from("a4"), &keyed("a"));
    assert_eq!(q.drain(), ["x", "b1", "a4"].map(Outgoing::from).to_vec());
    assert_eq!(q.take_collapsed(), 0);
}

#[test]
fn a_larger_replacement_that_does_not_fit_keeps_the_older_message() {
    let mut q = OutboxQueue::new(Outbox::bounded(10).max_bytes(10));
    q.push_with(msg(1, 4), &keyed("k"));
    q.push(msg(2, 4));
    assert!(matches!(
        q.push_with(msg(3, 8), &keyed("k")),
        Pushed::Refused { .. }
    ));
    assert_eq!(q.bytes(), 8);
    assert_eq!(q.drain(), vec![msg(1, 4), msg(2, 4)]);
    // Under DropOldest the older message makes room first, then the oldest others.
    let mut q = OutboxQueue::new(
        Outbox::bounded(10)
            .max_bytes(10)
            .on_overflow(Overflow::DropOldest),
    );
    q.push(msg(1, 4));
    q.push_with(msg(2, 4), &keyed("k"));
    assert_eq!(
        q.push_with(msg(3, 8), &keyed("k")),
        Pushed::QueuedDroppingOldest(1)
    );
    assert_eq!(q.drain(), vec![msg(3, 8)]);
}

#[test]
fn expired_messages_are_skipped_and_set_aside_and_make_room() {
    let mut q = OutboxQueue::new(Outbox::bounded(2));
    let short = Delivery::new().ttl(Duration::from_millis(1));
    q.push_with(msg(1, 4), &short);
    q.push(msg(2, 4));
    std::thread::sleep(Duration::from_millis(5)); // past the 1 ms TTL, whatever the load
                                                  // Full, but the expired one goes first.
    assert_eq!(q.push(msg(3, 4)), Pushed::Queued);
    assert_eq!(q.drain(), vec![msg(2, 4), msg(3, 4)]);
    let (expired, uncarried) = q.take_expired();
    assert_eq!(uncarried, 0);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].message, msg(1, 4));
    assert_eq!(expired[0].ttl, Duration::from_millis(1));
    // On the way out too.
    q.push_with(msg(4, 4), &short);
    q.push(msg(5, 4));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(q.take_for_flight().map(|t| t.message), Some(msg(5, 4)));
    assert_eq!(q.take_expired().0.len(), 1);
    assert!(!q.has_events());
}

#[test]
fn beyond_the_expired_kept_for_events_only_a_count_is_kept() {
    let n = MAX_EXPIRED_HELD + 5;
    let mut q = OutboxQueue::new(Outbox::bounded(n));
    let short = Delivery::new().ttl(Duration::from_millis(1));
    for i in 0..n {
        q.push_with(msg(i, 4), &short);
    }
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(q.pop_front(), None);
    let (expired, uncarried) = q.take_expired();
    assert_eq!((expired.len(), uncarried), (MAX_EXPIRED_HELD, 5));
    assert_eq!(q.bytes(), 0);
}

fn msg(i: usize, size: usize) -> Outgoing {
    let mut s = format!("{i}:");
    while s.len() < size {
        s.push('x');
    }
    Outgoing::from(s)
}

#[test]
fn reject_hands_the_message_back() {
    let mut q = OutboxQueue::new(Outbox::bounded(2));
    assert_eq!(q.push(msg(1, 4)), Pushed::Queued);
    assert_eq!(q.push(msg(2, 4)), Pushed::Queued);
    match q.push(msg(3, 4)) {
        Pushed::Refused {
            message,
            error,
            dropped,
        } => {
            assert_eq!(message, msg(3, 4));
            assert!(matches!(
                error,
                Error::OutboxFull {
                    max_messages: 2,
                    ..
                }
            ));
            assert!(!dropped);
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(q.drain(), vec![msg(1, 4), msg(2, 4)]);
}

#[test]
fn drop_oldest_keeps_the_newest_in_order() {
    let mut q = OutboxQueue::new(Outbox::bounded(3).on_overflow(Overflow::DropOldest));
    for i in 0..3 {
        assert_eq!(q.push(msg(i, 4)), Pushed::Queued);
    }
    assert_eq!(q.push(msg(3, 4)), Pushed::QueuedDroppingOldest(1));
    assert_eq!(q.drain(), vec![msg(1, 4), msg(2, 4), msg(3, 4)]);
}

#[test]
fn drop_newest_counts_as_a_drop() {
    let mut q = OutboxQueue::new(Outbox::bounded(1).on_overflow(Overflow::DropNewest));
    q.push(msg(0, 4));
    assert!(matches!(
        q.push(msg(1, 4)),
        Pushed::Refused { dropped: true, .. }
    ));
}

#[test]
fn byte_limit_applies_and_oversized_is_refused() {
    let mut q = OutboxQueue::new(Outbox::bounded(100).max_bytes(10));
    assert_eq!(q.push(msg(0, 6)), Pushed::Queued);
    assert!(matches!(q.push(msg(1, 6)), Pushed::Refused { .. }));
    let mut q = OutboxQueue::new(
        Outbox::bounded(100)
            .max_bytes(10)
            .on_overflow(Overflow::DropOldest),
    );
    assert!(matches!(
        q.push(msg(0, 11)),
        Pushed::Refused {
            error: Error::MessageTooLargeForOutbox {
                size: 11,
                max_bytes: 10
            },
            ..
        }
    ));
}
