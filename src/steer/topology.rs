//! Client subnets to answer groups, for the topology policy, and the EDNS Client Subnet
//! option (RFC 7871) that carries a client's subnet through its resolver.
//!
//! A [`Table`] is built once per configuration: the rules' prefixes cut the address space
//! into ranges, each with its group (the most specific rule's, 0 when none matches) and the
//! prefix length over which that answer holds, which is the SCOPE PREFIX-LENGTH a response
//! must carry (RFC 7871 section 7.2.1). Per query it is one binary search.

use std::net::IpAddr;

/// The client a query is answered for: from ECS when present, else the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    /// Significant leading bits of `addr` (ECS SOURCE PREFIX-LENGTH; the full width without).
    pub source: u8,
}

impl Client {
    pub fn from_source(addr: IpAddr) -> Self {
        Client {
            addr,
            source: width(addr),
        }
    }
}

fn width(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// The address as a left-aligned 128-bit number, and the family's width.
fn bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => ((u32::from(v) as u128) << 96, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

/// The address as a left-aligned 128-bit number.
pub(crate) fn left(a: IpAddr) -> u128 {
    bits(a).0
}

pub(crate) fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// An ECS option as a query carries it, checked: family 1 or 2, SOURCE PREFIX-LENGTH
/// within the family, exactly the address bytes it needs and no bits set beyond it.
/// `None` when malformed (the query gets FORMERR, RFC 7871 section 7.2.1).
pub fn parse_ecs(data: &[u8]) -> Option<Client> {
    let (family, source) = (
        u16::from_be_bytes([*data.first()?, *data.get(1)?]),
        *data.get(2)?,
    );
    let addr_bytes = data.get(4..)?;
    let mut octets = [0u8; 16];
    let addr = match family {
        1 if source <= 32 => {
            octets[..addr_bytes.len().min(4)]
                .copy_from_slice(&addr_bytes[..addr_bytes.len().min(4)]);
            IpAddr::from([octets[0], octets[1], octets[2], octets[3]])
        }
        2 if source <= 128 => {
            octets[..addr_bytes.len().min(16)]
                .copy_from_slice(&addr_bytes[..addr_bytes.len().min(16)]);
            IpAddr::from(octets)
        }
        _ => return None,
    };
    let c = Client { addr, source };
    (addr_bytes.len() == source.div_ceil(8) as usize && ecs_valid(c)).then_some(c)
}

/// No address bits are set beyond the source prefix length, which is within the family.
pub fn ecs_valid(c: Client) -> bool {
    let (b, w) = bits(c.addr);
    c.source <= w && b & !mask(c.source) == 0
}

/// Appends the ECS option of a response: the query's family, source and address, and `scope`.
pub fn write_ecs(out: &mut Vec<u8>, c: Client, scope: u8) {
    let n = c.source.div_ceil(8) as usize;
    out.extend_from_slice(&8u16.to_be_bytes());
    out.extend_from_slice(&(4 + n as u16).to_be_bytes());
    out.extend_from_slice(&(if c.addr.is_ipv4() { 1u16 } else { 2 }).to_be_bytes());
    out.extend_from_slice(&[c.source, scope]);
    match c.addr {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
    }
}

/// The length of the ECS option [`write_ecs`] writes for `c`.
pub fn ecs_len(c: Client) -> usize {
    8 + c.source.div_ceil(8) as usize
}

/// The client-subnet table of one topology name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// IPv4 ranges by first address (its 32 bits), and IPv6 ranges (128 bits), each with
    /// its group and scope beside: 8 and 20 bytes a range, for tables of a whole database.
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// Ranges by first address, with each one's group and scope prefix length.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ranges<K> {
    starts: Vec<K>,
    meta: Vec<(u16, u8)>,
}

impl<K: Copy + Ord> Ranges<K> {
    fn of(list: &[(u128, u16, u8)], key: impl Fn(u128) -> K) -> Self {
        Ranges {
            starts: list.iter().map(|r| key(r.0)).collect(),
            meta: list.iter().map(|r| (r.1, r.2)).collect(),
        }
    }

    fn find(&self, k: K) -> (u16, u8) {
        let i = self.starts.partition_point(|&s| s <= k).saturating_sub(1);
        self.meta.get(i).copied().unwrap_or((0, 0))
    }
}

fn v4_key(left: u128) -> u32 {
    (left >> 96) as u32
}

impl Table {
    /// `rules[k]` lists the prefixes of group `k + 1`; the most specific prefix that
    /// contains an address decides (the earlier rule on a tie); group 0 is the rest.
    pub fn new(rules: &[Vec<ipnet::IpNet>]) -> Self {
        let (v4, v6) = subnet_ranges(rules);
        Table {
            v4: Ranges::of(&v4, v4_key),
            v6: Ranges::of(&v6, |k| k),
        }
    }

    /// As [`Table::new`], and where no subnet rule holds, the group of the client's place
    /// in `covers` (`groups[place id]`), with the scope of the database network (the longer
    /// prefix where a subnet rule's range is narrower). Subnet rules win over places: they
    /// are the operator's own exceptions.
    pub fn with_places(
        rules: &[Vec<ipnet::IpNet>],
        covers: &super::geo::Covers,
        groups: &[u32],
    ) -> Self {
        use super::geo::{narrower, overlaps, Block};
        let (v4, v6) = subnet_ranges(rules);
        let family = |ranges: &[(u128, u16, u8)], places: &[Block]| {
            let sub: Vec<Block> = ranges
                .iter()
                .map(|&(start, g, len)| Block {
                    start,
                    len,
                    id: g as u32,
                })
                .collect();
            let mut out: Vec<(u128, u16, u8)> = Vec::with_capacity(places.len());
            overlaps(&sub, places, |s, p| {
                let entry = if s.id != 0 {
                    (s.start, s.id as u16, s.len)
                } else {
                    let (start, len) = narrower(s, p);
                    (start, groups[p.id as usize] as u16, len)
                };
                if out.last().is_none_or(|l| l.0 != entry.0) {
                    out.push(entry);
                }
            });
            out
        };
        Table {
            v4: Ranges::of(&family(&v4, &covers.v4), v4_key),
            v6: Ranges::of(&family(&v6, &covers.v6), |k| k),
        }
    }

    /// How many ranges the table holds (IPv4, IPv6).
    pub fn len(&self) -> (usize, usize) {
        (self.v4.starts.len(), self.v6.starts.len())
    }

    /// The group of `c` and the scope prefix length of that answer.
    pub fn find(&self, c: Client) -> (u16, u8) {
        if c.source == 0 {
            return (0, 0); // the client asked that its address not be used
        }
        let (b, w) = bits(c.addr);
        let b = b & mask(c.source);
        if w == 32 {
            self.v4.find(v4_key(b))
        } else {
            self.v6.find(b)
        }
    }
}

/// The ranges of the subnet rules (`rules[k]` of group `k + 1`) over IPv4 and IPv6, as
/// `(left-aligned start, group, scope)`, covering each family.
type Cover = Vec<(u128, u16, u8)>;

fn subnet_ranges(rules: &[Vec<ipnet::IpNet>]) -> (Cover, Cover) {
    let mut nets4 = Vec::new();
    let mut nets6 = Vec::new();
    for (k, rule) in rules.iter().enumerate() {
        for n in rule {
            let (b, w) = bits(n.network());
            let entry = (b, n.prefix_len(), k as u16 + 1);
            if w == 32 {
                nets4.push(entry);
            } else {
                nets6.push(entry);
            }
        }
    }
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    split(0, 0, 32, &nets4, None, &mut v4);
    split(0, 0, 128, &nets6, None, &mut v6);
    (v4, v6)
}

/// Cuts the prefix `start/len` (of a `width`-bit family) into ranges, given the rule
/// prefixes that overlap it and the best rule containing it so far.
fn split(
    start: u128,
    len: u8,
    width: u8,
    nets: &[(u128, u8, u16)],
    best: Option<(u8, u16)>,
    out: &mut Vec<(u128, u16, u8)>,
) {
    let mut best = best;
    for &(_, l, g) in nets.iter().filter(|n| n.1 <= len) {
        if best.is_none_or(|(bl, bg)| l > bl || (l == bl && g < bg)) {
            best = Some((l, g));
        }
    }
    let inside: Vec<(u128, u8, u16)> = nets.iter().copied().filter(|n| n.1 > len).collect();
    if inside.is_empty() || len >= width {
        out.push((start, best.map_or(0, |b| b.1), len));
        return;
    }
    let bit = 1u128 << (127 - len as u32);
    for half in [start, start | bit] {
        let sub: Vec<(u128, u8, u16)> = inside
            .iter()
            .copied()
            .filter(|n| n.0 & bit == half & bit)
            .collect();
        split(half, len + 1, width, &sub, best, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Client {
        Client::from_source(s.parse().unwrap())
    }

    fn nets(v: &[&str]) -> Vec<ipnet::IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn most_specific_rule_wins_with_the_scope_it_holds_over() {
        let t = Table::new(&[
            nets(&["10.0.0.0/8", "2001:db8::/32"]),
            nets(&["10.1.0.0/16"]),
        ]);
        assert_eq!(t.find(c("10.1.2.3")), (2, 16));
        // In 10/8 but not 10.1/16: the answer holds for the prefix that excludes 10.1/16.
        let (g, scope) = t.find(c("10.200.0.1"));
        assert_eq!(g, 1);
        assert!((9..=16).contains(&scope), "{scope}");
        // Every address sharing that prefix gets the same group.
        assert_eq!(t.find(c("10.128.0.0")).0, 1);
        assert_eq!(t.find(c("192.0.2.1")).0, 0);
        assert_eq!(t.find(c("2001:db8:5::1")), (1, 32));
        assert_eq!(t.find(c("2001:db9::1")).0, 0);
        // With no rules, one range: group 0 for all, scope 0.
        assert_eq!(Table::new(&[]).find(c("192.0.2.1")), (0, 0));
    }

    #[test]
    fn scopes_are_exact_for_every_address_they_cover() {
        let t = Table::new(&[
            nets(&["10.0.0.0/8", "10.1.128.0/17"]),
            nets(&["10.1.0.0/16"]),
        ]);
        for a in [
            "10.1.200.9",
            "10.1.5.5",
            "10.9.9.9",
            "11.0.0.1",
            "9.255.0.0",
        ] {
            let (g, scope) = t.find(c(a));
            // Any address in the same /scope gets the same group.
            let (b, _) = bits(a.parse().unwrap());
            for probe in [
                b & mask(scope),
                (b & mask(scope)) | !mask(scope) & (u128::MAX << 96),
            ] {
                let v4 = std::net::Ipv4Addr::from((probe >> 96) as u32);
                assert_eq!(t.find(Client::from_source(v4.into())).0, g, "{a} /{scope}");
            }
        }
        assert_eq!(t.find(c("10.1.200.9")).0, 1); // /17 beats /16
    }

    #[test]
    fn ecs_options_are_checked() {
        let ok = parse_ecs(&[0, 1, 24, 0, 198, 51, 100]).unwrap();
        assert_eq!(ok.addr, "198.51.100.0".parse::<IpAddr>().unwrap());
        assert_eq!(ok.source, 24);
        let v6 = parse_ecs(&[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0]).unwrap();
        assert_eq!(v6.source, 56);
        assert!(parse_ecs(&[0, 1, 0, 0]).is_some(), "source 0, no address");
        for bad in [
            &[0, 3, 8, 0, 1][..],            // unknown family
            &[0, 1, 33, 0, 1, 2, 3, 4, 5],   // source beyond 32
            &[0, 1, 24, 0, 198, 51],         // too few address bytes
            &[0, 1, 24, 0, 198, 51, 100, 7], // too many
            &[0, 1, 23, 0, 198, 51, 101],    // a bit set beyond the source
            &[0, 1],                         // truncated
        ] {
            assert!(parse_ecs(bad).is_none(), "{bad:?}");
        }
        let mut out = Vec::new();
        write_ecs(&mut out, ok, 16);
        assert_eq!(out, [0, 8, 0, 7, 0, 1, 24, 16, 198, 51, 100]);
        assert_eq!(ecs_len(ok), out.len());
    }
}
