//! Where a large zone's memory goes: the heap bytes held after reading the zone file, and
//! after preparing its answers, counted by a wrapping allocator, with the time each step
//! takes. The zone is the one `benches/bigzone.py` makes (one record per name: A, AAAA, TXT,
//! MX and CNAME in the proportions 12:4:2:1:1).
//!
//! Run: `cargo bench --bench zone_memory [-- RECORDS]` (100,000 by default).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gtmd::dns::snapshot::{Snapshot, Zones};
use gtmd::dns::Publication;

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HELD.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HELD.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// The zone of `benches/bigzone.py`'s `generate`.
fn generate(path: &std::path::Path, records: usize) {
    let mut z = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        z,
        "$ORIGIN big.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.1\nmarker IN TXT \"1\""
    )
    .unwrap();
    for i in 0..records {
        let (a, b, c) = (i >> 16 & 255, i >> 8 & 255, i & 255);
        match i % 20 {
            0..12 => writeln!(z, "h{i} IN A 10.{a}.{b}.{c}"),
            12..16 => writeln!(z, "h{i} IN AAAA 2001:db8::{:x}:{:x}", i >> 16, i & 0xffff),
            16..18 => writeln!(z, "h{i} IN TXT \"v=spf1 ip4:10.{a}.{b}.0/24 -all\""),
            18 => writeln!(z, "h{i} IN MX 10 h{}", i - 1),
            _ => writeln!(z, "h{i} IN CNAME h{}", i - 1),
        }
        .unwrap();
    }
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("gtmd-zone-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    generate(&dir.join("big.test.zone"), records);
    let per = |b: isize| b as f64 / records as f64;

    let base = held();
    let t = Instant::now();
    let zones = gtmd::zone::load_dir(&dir).unwrap();
    let read = t.elapsed();
    let zone_bytes = held() - base;

    let t = Instant::now();
    let publication = Publication::new(Snapshot {
        zones: Arc::new(Zones::new(zones)),
        ready: true,
        ..Default::default()
    });
    let prepare = t.elapsed();
    let all = held() - base;
    std::fs::remove_dir_all(&dir).unwrap();

    println!("{records} records (heap bytes held, counted by the allocator)");
    println!("| step | time | MB held | bytes per record |");
    println!("| --- | ---: | ---: | ---: |");
    let row = |step: &str, secs: f64, b: isize| {
        println!(
            "| {step} | {secs:.2} s | {:.1} | {:.0} |",
            b as f64 / 1e6,
            per(b)
        )
    };
    row("read the zone", read.as_secs_f64(), zone_bytes);
    row("prepare answers", prepare.as_secs_f64(), all - zone_bytes);
    row("total", (read + prepare).as_secs_f64(), all);
    drop(publication);
}
