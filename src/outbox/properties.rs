//! Property tests of the outbox queue: random operation sequences against a model.

use super::*;
use proptest::prelude::*;

proptest! {
    /// Whatever the limits, policy and operations: never above a limit, never reordered,
    /// byte count exact, and every message either queued, handed back or reported dropped.
    #[test]
    fn bounded_ordered_and_accounted(
        max_messages in 1usize..20,
        max_bytes in 1usize..200,
        policy in 0u8..3,
        ops in proptest::collection::vec((0u8..3, 0usize..40, 0u8..3), 0..300),
    ) {
        let overflow = [Overflow::Reject, Overflow::DropOldest, Overflow::DropNewest][policy as usize];
        let mut q = OutboxQueue::new(Outbox::bounded(max_messages).max_bytes(max_bytes).on_overflow(overflow));
        let (mut next, mut accounted) = (0usize, 0usize);
        // The last number popped among plain messages, and per collapse key.
        let mut last_popped: HashMap<String, usize> = HashMap::new();
        for (op, size, ttl) in ops {
            if op > 0 {
                // op 1: plain; op 2: one of three collapse keys (chosen by size).
                let key = (op == 2).then(|| format!("k{}", size % 3));
                let text = format!("{next:04}{}{}", key.as_deref().unwrap_or("--"), "x".repeat(size));
                next += 1;
                let delivery = key.map_or_else(Delivery::new, |k| Delivery::new().collapse_key(k));
                // ttl 1: expires at once (purged when the queue is full, or skipped when
                // popped); ttl 2: outlives the test.
                let delivery = match ttl {
                    1 => delivery.ttl(Duration::from_nanos(1)),
                    2 => delivery.ttl(Duration::from_secs(3600)),
                    _ => delivery,
                };
                match q.push_with(Outgoing::from(text), &delivery) {
                    Pushed::Queued => {}
                    Pushed::QueuedDroppingOldest(n) => accounted += n,
                    Pushed::Refused { .. } => accounted += 1,
                }
                accounted += q.take_collapsed() as usize;
            } else if let Some(m) = q.pop_front() {
                let text = m.as_text().unwrap();
                let n: usize = text[..4].parse().unwrap();
                let last = last_popped.entry(text[4..6].to_string()).or_default();
                prop_assert!(n + 1 > *last, "reordered");
                *last = n + 1;
                accounted += 1;
            }
            let (expired, uncarried) = q.take_expired();
            accounted += expired.len() + uncarried;
            prop_assert_eq!(q.expiring, q.items.iter().filter(|e| e.expires()).count());
            prop_assert!(q.len() <= max_messages);
            prop_assert!(q.bytes() <= max_bytes);
            prop_assert_eq!(q.items.iter().map(|e| e.message.len()).sum::<usize>(), q.bytes());
            prop_assert_eq!(accounted + q.len(), next, "a message vanished");
            let keyed = q.items.iter().filter(|e| e.key().is_some()).count();
            prop_assert_eq!(keyed, q.keys.len(), "one queued entry per key");
        }
    }
}
