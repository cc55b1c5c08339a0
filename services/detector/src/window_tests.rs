use proptest::prelude::*;

use super::*;

/// 10 s buckets up to 5 min, 1 min buckets up to 30 min, 20 s lateness.
fn small() -> WindowConfig {
    WindowConfig {
        tiers: vec![
            Tier::new(Dur::secs(10), Dur::mins(5)),
            Tier::new(Dur::mins(1), Dur::mins(30)),
        ],
        lateness: Dur::secs(20),
        max_keys: 100,
    }
}

/// Three tiers: 10 s up to 2 min, 1 min up to 10 min, 5 min up to 1 h.
fn three() -> WindowConfig {
    WindowConfig {
        tiers: vec![
            Tier::new(Dur::secs(10), Dur::mins(2)),
            Tier::new(Dur::mins(1), Dur::mins(10)),
            Tier::new(Dur::mins(5), Dur::hours(1)),
        ],
        lateness: Dur::secs(20),
        max_keys: 100,
    }
}

const S: i64 = 1000;

#[test]
fn sums_over_fine_and_coarse_windows_by_hand() {
    let mut w: WindowStore<&str> = WindowStore::new(small()).unwrap();
    // One event a second for 20 minutes (t = 0 .. 1199 s); every 4th is bad.
    for t in 0..1200 {
        assert_eq!(
            w.record(&"k", t * S, Counts::one(t % 4 == 0)),
            Outcome::Counted
        );
    }
    // Watermark = 1199 - 20 = 1179 s; closed buckets end at 1170 s.
    assert_eq!(w.watermark(), Some(1179 * S));
    assert_eq!(w.closed_end(), Some(1170 * S));
    // 1 min ending at 1170 s: t in [1110, 1170): 60 events, bad at multiples of 4: 1112..1168 = 15.
    assert_eq!(w.sum_closed(&"k", Dur::mins(1)), Counts::new(15, 60));
    // 5 min (fine only): [870, 1170): 300 events, 75 bad.
    assert_eq!(w.sum_closed(&"k", Dur::mins(5)), Counts::new(75, 300));
    // 10 min (hybrid): start 570 s rounds down to the 1-min bucket at 540 s: [540, 1170) = 630
    // events; bad: multiples of 4 in [540, 1170) = 540..1168 -> (1168-540)/4+1 = 158.
    assert_eq!(w.span(1170 * S, Dur::mins(10)), (540 * S, 1170 * S));
    assert_eq!(w.sum_closed(&"k", Dur::mins(10)), Counts::new(158, 630));
    // Provisional sum including the open buckets, ending after the newest event: [1170, 1200),
    // bad at 1172, 1176, ..., 1196 = 7.
    assert_eq!(w.sum(&"k", 1200 * S, Dur::secs(30)), Counts::new(7, 30));
    // Longer than max_window: clamped to 30 min, i.e. everything since 0 up to 1170 s.
    assert_eq!(w.sum_closed(&"k", Dur::hours(5)), Counts::new(293, 1170));
    // Unknown key and a window with no traffic: empty, not an error.
    assert_eq!(w.sum_closed(&"other", Dur::mins(5)), Counts::default());
    assert_eq!(w.sum(&"k", 5000 * S, Dur::mins(1)), Counts::default());
    assert_eq!(Counts::default().ratio(), None);
}

#[test]
fn late_events_are_refused_and_counted() {
    let mut w: WindowStore<u32> = WindowStore::new(small()).unwrap();
    assert_eq!(w.record(&1, 100 * S, Counts::one(false)), Outcome::Counted);
    // Watermark 80 s: 80 s still counts (into a bucket that is still open), 79.999 s does not.
    assert_eq!(w.record(&1, 80 * S, Counts::one(true)), Outcome::Counted);
    assert_eq!(w.record(&1, 80 * S - 1, Counts::one(true)), Outcome::Late);
    // A late event for another key is refused too: the watermark is the store's.
    assert_eq!(w.record(&2, 10 * S, Counts::one(true)), Outcome::Late);
    assert_eq!(w.dropped(), (2, 0));
    assert_eq!(w.sum(&1, 110 * S, Dur::mins(1)), Counts::new(1, 2));
}

#[test]
fn keys_beyond_the_cap_overflow_and_idle_keys_are_evicted() {
    let mut w: WindowStore<u32> = WindowStore::new(WindowConfig {
        max_keys: 2,
        ..small()
    })
    .unwrap();
    assert_eq!(w.record(&1, 0, Counts::one(false)), Outcome::Counted);
    assert_eq!(w.record(&2, 0, Counts::one(false)), Outcome::Counted);
    assert_eq!(w.record(&3, 0, Counts::one(false)), Outcome::Overflow);
    assert_eq!(w.record(&1, S, Counts::one(false)), Outcome::Counted);
    assert_eq!(w.dropped(), (0, 1));
    // Key 1 stays active. At 31 min the 30 min window (ending at the watermark, 30:40) starts
    // at 0:40, rounded down to the coarse bucket at 0: key 2 is still inside; at 32 min not.
    w.record(&1, 31 * 60 * S, Counts::one(false));
    assert_eq!(w.evict_idle(), 0);
    w.record(&1, 32 * 60 * S, Counts::one(false));
    assert_eq!(w.evict_idle(), 1);
    assert_eq!(w.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(
        w.record(&3, 32 * 60 * S, Counts::one(false)),
        Outcome::Counted
    );
}

#[test]
fn memory_per_key_is_bounded_by_the_tiers() {
    let w: WindowStore<u32> = WindowStore::new(WindowConfig::default()).unwrap();
    // Ring lengths: (span + next tier's bucket + lateness) / bucket + 3: 1 s: (600 + 10 + 30)
    // / 1 + 3 = 643; 10 s: (21600 + 300 + 30) / 10 + 3 = 2196; 5 min: (259200 + 3600 + 30) /
    // 300 + 3 = 879; 1 h: (3024000 + 3600 + 30) / 3600 + 3 = 844. Versus 3,024,000 cells for
    // 35 d at 1 s.
    assert_eq!(w.cells_per_key(), 643 + 2196 + 879 + 844);
    for bad in [
        // 15 s is not a multiple of 10 s.
        vec![
            Tier::new(Dur::secs(10), Dur::mins(5)),
            Tier::new(Dur::secs(15), Dur::mins(30)),
        ],
        // Spans must grow.
        vec![
            Tier::new(Dur::secs(10), Dur::mins(5)),
            Tier::new(Dur::mins(1), Dur::mins(5)),
        ],
        // A span shorter than the next bucket cannot hold the tail.
        vec![
            Tier::new(Dur::secs(10), Dur::secs(30)),
            Tier::new(Dur::mins(1), Dur::mins(5)),
        ],
        vec![],
    ] {
        assert!(
            WindowStore::<u32>::new(WindowConfig {
                tiers: bad.clone(),
                ..small()
            })
            .is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn the_default_tiers_serve_every_default_window() {
    let mut w: WindowStore<u8> = WindowStore::new(WindowConfig::default()).unwrap();
    // One event a minute for 40 days; the last 10 minutes bad.
    let days40 = 40 * 1440;
    for m in 0..days40 {
        w.record(&0, m * 60 * S, Counts::one(m >= days40 - 10));
    }
    let end = days40 * 60 * S;
    // 5 min and 1 h (10 s tier): exact.
    assert_eq!(w.sum(&0, end, Dur::mins(5)), Counts::new(5, 5));
    assert_eq!(w.sum(&0, end, Dur::hours(1)), Counts::new(10, 60));
    // 3 d (5 min tier + 10 s tail): aligned, exact.
    assert_eq!(w.sum(&0, end, Dur::days(3)), Counts::new(10, 3 * 1440));
    // 30 d (1 h tier + tails): aligned, exact; longer than 35 d is clamped.
    assert_eq!(w.sum(&0, end, Dur::days(30)), Counts::new(10, 30 * 1440));
    assert_eq!(w.sum(&0, end, Dur::days(40)), Counts::new(10, 35 * 1440));
    // Ending 2.5 min before the hour: 30 d back is 2.5 min past an hour, rounded down to the
    // 1 h bucket: [end - 30 d - 1 h, end - 150 s). Events (one a minute, m = 0 .. days40 - 1)
    // from m = days40 - 43260 to days40 - 3: 43258, of which m >= days40 - 10: 8 bad.
    let odd = end - 150 * S;
    assert_eq!(
        w.span(odd, Dur::days(30)),
        (end - 30 * 86_400 * S - 3600 * S, odd)
    );
    assert_eq!(w.sum(&0, odd, Dur::days(30)), Counts::new(8, 43_258));
}

/// Events whose times never fall behind the running maximum by more than the lateness, so a
/// single instance refuses none of them. Includes jumps of up to an hour (ring eviction).
fn events() -> impl Strategy<Value = Vec<(u8, i64, bool)>> {
    prop::collection::vec(
        (
            0u8..4,
            prop_oneof![8 => 0i64..15_000, 1 => 0i64..3_600_000],
            0i64..=20_000,
            any::<bool>(),
        ),
        1..400,
    )
    .prop_map(|v| {
        let mut max = 1_700_000_000_000i64;
        v.into_iter()
            .map(|(k, step, back, bad)| {
                max += step;
                (k, max - back, bad)
            })
            .collect()
    })
}

fn windows() -> [Dur; 6] {
    [
        Dur::secs(10),
        Dur::mins(1),
        Dur::mins(5),
        Dur::mins(7),
        Dur::mins(20),
        Dur::mins(30),
    ]
}

proptest! {
    #[test]
    fn sums_equal_brute_force_over_the_span(evs in events(), tiers3 in any::<bool>()) {
        let mut w: WindowStore<u8> = WindowStore::new(if tiers3 { three() } else { small() }).unwrap();
        for &(k, t, bad) in &evs {
            prop_assert_eq!(w.record(&k, t, Counts::one(bad)), Outcome::Counted);
        }
        let max = w.max_event_time().unwrap();
        for end in [w.closed_end().unwrap(), max + 10 * S, max - 45 * S] {
            for len in windows() {
                let (s, e) = w.span(end, len);
                for k in 0..4u8 {
                    let want = evs.iter().filter(|&&(kk, t, _)| kk == k && t >= s && t < e)
                        .fold(Counts::default(), |c, &(_, _, bad)| c + Counts::one(bad));
                    prop_assert_eq!(w.sum(&k, end, len), want, "key {} len {} span {:?}", k, len, (s, e));
                }
            }
        }
    }

    #[test]
    fn merging_two_instances_equals_one_instance(
        evs in events(),
        split in prop::collection::vec(any::<bool>(), 400),
        tiers3 in any::<bool>(),
    ) {
        let cfg = if tiers3 { three() } else { small() };
        let mut one: WindowStore<u8> = WindowStore::new(cfg.clone()).unwrap();
        let mut a: WindowStore<u8> = WindowStore::new(cfg.clone()).unwrap();
        let mut b: WindowStore<u8> = WindowStore::new(cfg).unwrap();
        for (i, &(k, t, bad)) in evs.iter().enumerate() {
            prop_assert_eq!(one.record(&k, t, Counts::one(bad)), Outcome::Counted);
            let part = if split[i] { &mut a } else { &mut b };
            prop_assert_eq!(part.record(&k, t, Counts::one(bad)), Outcome::Counted);
        }
        // Either direction.
        let mut ab = a.clone();
        ab.merge(&b).unwrap();
        let mut ba = b;
        ba.merge(&a).unwrap();
        prop_assert_eq!(ab.watermark(), one.watermark());
        let max = one.max_event_time().unwrap();
        for end in [one.closed_end().unwrap(), max + 10 * S] {
            for len in windows() {
                for k in 0..4u8 {
                    let want = one.sum(&k, end, len);
                    prop_assert_eq!(ab.sum(&k, end, len), want, "a+b key {} len {}", k, len);
                    prop_assert_eq!(ba.sum(&k, end, len), want, "b+a key {} len {}", k, len);
                }
            }
        }
    }
}

#[test]
fn merge_refuses_another_config() {
    let mut a: WindowStore<u8> = WindowStore::new(small()).unwrap();
    let b: WindowStore<u8> = WindowStore::new(WindowConfig {
        lateness: Dur::secs(1),
        ..small()
    })
    .unwrap();
    assert_eq!(a.merge(&b), Err(WindowError::ConfigMismatch));
}

#[test]
fn an_event_older_than_the_finest_ring_still_counts_in_the_windows_covering_it() {
    // Small config: the 10 s tier holds about 5 min. With the lateness widened to 25 min (a
    // replay), an event 20 min behind the newest lands before that ring's oldest bucket.
    let mut w: WindowStore<&str> = WindowStore::new(small()).unwrap();
    w.set_lateness(Dur::mins(25));
    for t in (0..1800).step_by(10) {
        w.record(&"k", t * S, Counts::one(false));
    }
    assert_eq!(
        w.record(&"k", 1000 * S, Counts::one(true)),
        Outcome::Counted
    );
    let end = w.open_end().unwrap();
    assert_eq!(end, 1800 * S);
    // 5 min [1500, 1800): all from the 10 s ring, without the old event.
    assert_eq!(w.sum(&"k", end, Dur::mins(5)), Counts::new(0, 30));
    // 15 min [900, 1800): the 1 min ring for [900, 1500), the 10 s ring after: with it.
    assert_eq!(w.sum(&"k", end, Dur::mins(15)), Counts::new(1, 91));
    // Lateness is capped at the longest window (30 min).
    w.set_lateness(Dur::hours(5));
    assert_eq!(w.watermark(), Some(1790 * S - 1800 * S));
}

#[test]
fn the_open_end_includes_the_newest_event() {
    let mut w: WindowStore<&str> = WindowStore::new(small()).unwrap();
    assert_eq!(w.open_end(), None);
    w.record(&"k", 12_345, Counts::one(true));
    // The 10 s bucket [10 s, 20 s) holds it; closed buckets still end before the watermark.
    assert_eq!(w.open_end(), Some(20 * S));
    assert_eq!(w.sum(&"k", 20 * S, Dur::secs(10)), Counts::new(1, 1));
    assert_eq!(w.closed_end(), Some(-10 * S));
}
