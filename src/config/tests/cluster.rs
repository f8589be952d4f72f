//! The [cluster] table.

use super::*;

#[cfg(feature = "cluster")]
#[test]
fn cluster_tables_are_checked_with_their_line() {
    let ok = "[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\nid = \"ns1\"\nquorum = 2\n";
    let c = parse(ok).unwrap().cluster.unwrap();
    assert_eq!(
        (c.id.as_str(), c.quorum, c.lease_ttl),
        ("ns1", Quorum::Count(2), Duration::from_secs(10))
    );
    assert_eq!(c.prefix(), "/gtmd/default/");
    let share = parse("[cluster]\nendpoints = [\"http://e:2379\"]\nquorum = \"50%\"\n").unwrap();
    assert_eq!(share.cluster.unwrap().quorum, Quorum::Share(0.5));
    for (text, path, line, msg) in [
        (
            "[cluster]\nendpoints = [\"127.0.0.1:2379\"]\n",
            "cluster.endpoints[0]",
            2,
            "not an etcd URL",
        ),
        (
            "[cluster]\nendpoints = [\"http://e:2379\"]\nquorum = \"most\"\n",
            "cluster.quorum",
            3,
            "majority",
        ),
        (
            "[cluster]\nendpoints = [\"http://e:2379\"]\nquorum = 0\n",
            "cluster.quorum",
            3,
            "a count",
        ),
        (
            "[cluster]\nendpoints = [\"http://e:2379\"]\nlease_ttl = \"1500ms\"\n",
            "cluster.lease_ttl",
            3,
            "whole seconds",
        ),
        (
            "[cluster]\nendpoints = [\"http://e:2379\"]\nid = \"ns 1\"\n",
            "cluster.id",
            3,
            "letters",
        ),
        (
            "[cluster]\nendpoints = [\"http://e:2379\"]\nca_file = \"ca.pem\"\n",
            "cluster.endpoints",
            2,
            "https://",
        ),
        (
            "[cluster]\nendpoints = [\"https://e:2379\"]\ncert_file = \"c.pem\"\n",
            "cluster.cert_file",
            3,
            "together",
        ),
        (
            "[cluster]\nendpoints = []\n",
            "cluster.endpoints",
            2,
            "at least one",
        ),
        (
            "[probe]\nsource = \"here\"\n",
            "probe.source",
            2,
            "not an IPv4",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert_eq!((e.path.as_str(), e.line), (path, Some(line)), "{e}");
        assert!(e.msg.contains(msg), "{e}");
    }
}

#[cfg(not(feature = "cluster"))]
#[test]
fn a_cluster_table_needs_the_cluster_feature() {
    let e = parse("[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap_err();
    assert!(e.msg.contains("--features cluster"), "{e}");
}
