//! Which node runs which key: rendezvous (highest random weight) hashing over the live nodes,
//! with an optional cap per node. Pure, and the same on every node: the hash is FNV-1a with a
//! SplitMix64 finish, fixed across Rust versions and platforms, and keys are placed in sorted
//! order, so nodes that see the same members agree on every key.

/// A key's score on a node: the node with the highest score runs the key.
pub(crate) fn score(node: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = node
        .as_bytes()
        .iter()
        .chain([0xff].iter())
        .chain(key.as_bytes());
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone mixes the last bytes poorly; SplitMix64's finish spreads them.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A fingerprint of a node's key list (sorted, without duplicates): nodes with the same one
/// were given the same keys. The same hash as [`score`], fixed across versions.
pub(crate) fn fingerprint(keys: &[String]) -> String {
    let joined = keys.join("\u{0}");
    format!("{:016x}", score("keys", &joined))
}

/// The owner of each of `keys` (sorted, without duplicates) among `nodes`, as an index into
/// `nodes`, considering for a key only the nodes that `know` it (nodes given other key lists,
/// in a rolling deploy); `None` when every such node is at `cap`, or there is none. Without a
/// cap, a node joining or leaving moves only the keys it gains or had.
pub(crate) fn place(
    keys: &[String],
    nodes: &[String],
    cap: Option<usize>,
    know: impl Fn(usize, &str) -> bool,
) -> Vec<Option<usize>> {
    let mut load = vec![0usize; nodes.len()];
    let mut ranked: Vec<usize> = (0..nodes.len()).collect();
    keys.iter()
        .map(|key| {
            let rank = |i: &usize| (score(&nodes[*i], key), std::cmp::Reverse(&nodes[*i]));
            let knows = |i: &usize| know(*i, key);
            let owner = match cap {
                None => ranked.iter().copied().filter(knows).max_by_key(rank),
                Some(cap) => {
                    ranked.sort_unstable_by_key(|i| std::cmp::Reverse(rank(i)));
                    ranked
                        .iter()
                        .copied()
                        .filter(knows)
                        .find(|i| load[*i] < cap)
                }
            };
            if let Some(i) = owner {
                load[i] += 1;
            }
            owner
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
        v.sort();
        v
    }

    fn owners(keys: &[String], nodes: &[String], cap: Option<usize>) -> Vec<Option<String>> {
        place(keys, nodes, cap, |_, _| true)
            .into_iter()
            .map(|o| o.map(|i| nodes[i].clone()))
            .collect()
    }

    #[test]
    fn a_key_goes_only_to_a_node_that_knows_it() {
        let keys = names("key-", 100);
        let nodes = names("node-", 3);
        // node-00000 knows only the first 10 keys (an older deploy).
        let know = |i: usize, key: &str| i != 0 || key < "key-00010";
        for cap in [None, Some(50)] {
            let placed = place(&keys, &nodes, cap, know);
            for (key, owner) in keys.iter().zip(&placed) {
                let owner = owner.expect("every key placed");
                assert!(
                    know(owner, key),
                    "{key} on node {owner} that does not know it"
                );
            }
        }
        assert_ne!(fingerprint(&keys[..10]), fingerprint(&keys));
        assert_eq!(fingerprint(&keys), fingerprint(&keys.clone()));
    }

    #[test]
    fn every_key_has_one_owner_and_the_shares_are_even() {
        let keys = names("key-", 3000);
        let nodes = names("node-", 3);
        let placed = owners(&keys, &nodes, None);
        for node in &nodes {
            let share = placed.iter().filter(|o| o.as_ref() == Some(node)).count();
            assert!((850..=1150).contains(&share), "{node}: {share} of 3000");
        }
    }

    #[test]
    fn a_node_joining_moves_only_the_keys_it_takes_and_one_leaving_only_its_own() {
        let keys = names("key-", 2000);
        let three = names("node-", 3);
        let mut four = three.clone();
        four.push("node-new".into());
        let before = owners(&keys, &three, None);
        let after = owners(&keys, &four, None);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(
                    a.as_deref(),
                    Some("node-new"),
                    "a key moved between old nodes"
                );
                moved += 1;
            }
        }
        assert!(
            (350..=650).contains(&moved),
            "{moved} of 2000 moved to the new node"
        );
        // And back: the keys of the node that leaves, and only those, move.
        let back = owners(&keys, &three, None);
        assert_eq!(back, before);
    }

    #[test]
    fn the_order_of_the_members_does_not_matter() {
        let keys = names("key-", 500);
        let nodes = names("node-", 4);
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(owners(&keys, &nodes, None), owners(&keys, &reversed, None));
    }

    #[test]
    fn a_cap_spills_keys_to_the_next_best_node_and_leaves_the_rest_unowned() {
        let keys = names("key-", 100);
        let nodes = names("node-", 2);
        let placed = owners(&keys, &nodes, Some(40));
        for node in &nodes {
            let share = placed.iter().filter(|o| o.as_ref() == Some(node)).count();
            assert_eq!(share, 40, "{node}");
        }
        assert_eq!(placed.iter().filter(|o| o.is_none()).count(), 20);
        assert!(owners(&keys, &[], None).iter().all(Option::is_none));
    }

    #[test]
    fn the_score_is_fixed_across_builds() {
        // Nodes built by different compilers must agree: values pinned (checked against an
        // independent Python implementation of the same FNV-1a + SplitMix64 finish).
        assert_eq!(score("", ""), 0x4f2d_b50f_1240_40cd);
        assert_eq!(score("node-a", "key-1"), 0x2cac_ebf5_f876_dbe5);
        assert_ne!(
            score("node-ab", "c"),
            score("node-a", "bc"),
            "the separator counts"
        );
    }
}
