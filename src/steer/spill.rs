//! Capacity-aware spill, pure: where the clients of a failover or topology name go when the
//! pool they normally use fails, given each pool's capacity.
//!
//! A pool's `capacity` is the share of the name's traffic it can carry, in percent (100: all
//! of it). Each client group (a failover name has one; a topology name one per rule, plus
//! the unmatched clients) normally uses the first pool of its order and carries its `share`
//! of the name's traffic. While that pool is usable the group stays on it. When it is not,
//! the group's traffic goes to the usable pools of its order in proportion to their spare
//! capacity (capacity minus the load of the groups that stay on them), not all to the next
//! one. A pool that would then carry more than its capacity is reported with how much of it
//! it would need.

/// One client group: its share of the name's traffic (0 to 1) and the pools it tries.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub share: f64,
    pub order: &'a [usize],
}

/// Where each group's traffic goes, and what that asks of each pool.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spill {
    /// Per group: each pool it is answered from with the fraction of its traffic (summing to
    /// 1); empty when no pool of its order is usable.
    pub split: Vec<Vec<(usize, f64)>>,
    /// Each pool that carries traffic, with its load in percent of the name's traffic.
    pub load: Vec<(usize, f64)>,
    /// Pools whose load is above their capacity, with load ÷ capacity (1.4: 140%).
    pub over: Vec<(usize, f64)>,
}

impl Spill {
    /// The load of pool `p`, in percent of the name's traffic.
    pub fn load_of(&self, p: usize) -> f64 {
        self.load
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(0.0, |(_, l)| *l)
    }
}

/// Spills the groups whose first pool is not `usable` over the usable pools of their order,
/// by spare capacity (`capacity(p)`, in percent of the name's traffic).
pub fn spill(
    groups: &[Group],
    capacity: &dyn Fn(usize) -> f64,
    usable: &dyn Fn(usize) -> bool,
) -> Spill {
    let mut out = Spill {
        split: vec![Vec::new(); groups.len()],
        ..Default::default()
    };
    let add = |load: &mut Vec<(usize, f64)>, p: usize, x: f64| match load
        .iter_mut()
        .find(|(q, _)| *q == p)
    {
        Some((_, l)) => *l += x,
        None => load.push((p, x)),
    };
    let mut spilled = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        match group.order.first() {
            Some(&first) if usable(first) => {
                out.split[g] = vec![(first, 1.0)];
                add(&mut out.load, first, group.share * 100.0);
            }
            _ => spilled.push(g),
        }
    }
    // The spare capacity left by the groups that stay, shared by every spilled group.
    let stayed = out.load.clone();
    let spare = |p: usize| {
        let l = stayed
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(0.0, |(_, l)| *l);
        (capacity(p) - l).max(0.0)
    };
    for g in spilled {
        let mut cands: Vec<usize> = Vec::new();
        for &p in groups[g].order {
            if usable(p) && !cands.contains(&p) {
                cands.push(p);
            }
        }
        let total: f64 = cands.iter().map(|&p| spare(p)).sum();
        // No spare anywhere: by capacity, so that every survivor is equally overloaded.
        let weight = |p: usize| if total > 0.0 { spare(p) } else { capacity(p) };
        let sum: f64 = cands.iter().map(|&p| weight(p)).sum();
        if sum <= 0.0 {
            continue;
        }
        for &p in &cands {
            let f = weight(p) / sum;
            if f > 0.0 {
                out.split[g].push((p, f));
                add(&mut out.load, p, groups[g].share * 100.0 * f);
            }
        }
    }
    out.over = out
        .load
        .iter()
        .filter(|&&(p, l)| l > capacity(p) * (1.0 + 1e-9))
        .map(|&(p, l)| (p, l / capacity(p)))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn share(s: &Spill, g: usize, p: usize) -> f64 {
        s.split[g]
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(0.0, |(_, f)| *f)
    }

    #[test]
    fn a_failed_primary_spills_over_the_survivors_by_capacity() {
        // Failover: pool 0 carries everything; 1 and 2 can carry 60% and 30%.
        let caps = [100.0, 60.0, 30.0];
        let order = [0, 1, 2];
        let g = [Group {
            share: 1.0,
            order: &order,
        }];
        let all = spill(&g, &|p| caps[p], &|_| true);
        assert_eq!(all.split[0], [(0, 1.0)]);
        assert!(all.over.is_empty());
        let s = spill(&g, &|p| caps[p], &|p| p != 0);
        assert!(close(share(&s, 0, 1), 2.0 / 3.0), "{s:?}");
        assert!(close(share(&s, 0, 2), 1.0 / 3.0), "{s:?}");
        // 100% on 90% of capacity: each survivor needs 111% of its own.
        assert_eq!(s.over.len(), 2);
        assert!(s.over.iter().all(|(_, r)| close(*r, 100.0 / 90.0)), "{s:?}");
        // Only pool 2 is left: it would need 333% of its capacity.
        let s = spill(&g, &|p| caps[p], &|p| p == 2);
        assert_eq!(s.split[0], [(2, 1.0)]);
        assert_eq!(s.over.len(), 1);
        assert!(close(s.over[0].1, 100.0 / 30.0));
        // Nothing usable: no answer from spill (the caller falls back to its all-down rule).
        let s = spill(&g, &|p| caps[p], &|_| false);
        assert!(s.split[0].is_empty());
    }

    #[test]
    fn spilled_traffic_goes_by_spare_capacity_not_by_order() {
        // Topology: eu clients (40%) use eu, us clients (40%) us, the rest (20%) ap.
        // Capacities: eu 60, us 60, ap 40: spare eu 20, ap 20 once us fails.
        let caps = [60.0, 60.0, 40.0];
        let (eu, us, ap) = ([0, 1, 2], [1, 0, 2], [2, 0, 1]);
        let g = [
            Group {
                share: 0.4,
                order: &eu,
            },
            Group {
                share: 0.4,
                order: &us,
            },
            Group {
                share: 0.2,
                order: &ap,
            },
        ];
        let s = spill(&g, &|p| caps[p], &|p| p != 1);
        assert_eq!(s.split[0], [(0, 1.0)]);
        assert_eq!(s.split[2], [(2, 1.0)]);
        // us's 40% split 20:20 between eu and ap, although eu comes first in its order.
        assert!(close(share(&s, 1, 0), 0.5));
        assert!(close(share(&s, 1, 2), 0.5));
        assert!(close(s.load_of(0), 60.0));
        assert!(close(s.load_of(2), 40.0));
        assert!(s.over.is_empty(), "exactly full is not over: {s:?}");
        // With ap at 30, the spare is eu 20, ap 10: 2:1, and both overloaded alike.
        let caps = [60.0, 60.0, 30.0];
        let s = spill(&g, &|p| caps[p], &|p| p != 1);
        assert!(close(share(&s, 1, 0), 2.0 / 3.0));
        assert!(close(s.load_of(0), 40.0 + 40.0 * 2.0 / 3.0));
        let ratio = |p| s.over.iter().find(|(q, _)| *q == p).unwrap().1;
        assert!(close(ratio(0), (40.0 + 80.0 / 3.0) / 60.0));
        assert!(close(ratio(2), (20.0 + 40.0 / 3.0) / 30.0));
    }

    #[test]
    fn without_spare_capacity_the_spill_goes_by_capacity() {
        let caps = [40.0, 40.0, 20.0];
        let (a, b, c) = ([0, 1, 2], [1, 0, 2], [2, 0, 1]);
        let g = [
            Group {
                share: 0.4,
                order: &a,
            },
            Group {
                share: 0.4,
                order: &b,
            },
            Group {
                share: 0.2,
                order: &c,
            },
        ];
        // Every pool is full with its own group: the spill goes 2:1 by capacity, and both
        // survivors need the same 167% of theirs.
        let s = spill(&g, &|p| caps[p], &|p| p != 1);
        assert!(close(share(&s, 1, 0), 2.0 / 3.0), "{s:?}");
        assert!(close(share(&s, 1, 2), 1.0 / 3.0), "{s:?}");
        assert_eq!(s.over.len(), 2);
        assert!(s.over.iter().all(|(_, r)| close(*r, 80.0 / 48.0)), "{s:?}");
    }
}
