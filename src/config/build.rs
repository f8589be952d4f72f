//! Turning the file as written ([`super::file`]) into the checked [`Config`]: every value
//! checked, every default applied, every error pointing at its TOML path and line. One module
//! per part of the file: [`super::server`] ([server], [rrl]), [`super::admin`] ([admin],
//! [probe], [alerts]), [`super::checks`], [`super::pools`] (pools, members, regions) and
//! [`super::names`].

use std::path::Path;

use super::{
    admin, checks, cluster, dnssec, file, names, pools, server, transfer, Config, ConfigError, Ctx,
};

pub(super) fn build(cx: &Ctx, raw: file::File, base: &Path) -> Result<Config, ConfigError> {
    // Each part is checked even when one before it failed, unless it needs that one's
    // result: every error is reported at once, in file order (`Ctx::finish`).
    let server = cx.keep(server::build_server(cx, &raw.server, base));
    let wire = cx.keep(server::build_wire(cx, &raw.server));
    let transfer = wire.as_ref().and_then(|wire| {
        cx.keep(transfer::build_transfer(
            cx,
            &raw,
            base,
            wire.allow_transfer.clone(),
        ))
    });
    let admin = cx.keep(admin::build_admin(cx, &raw.admin, base));
    if let (Some((listen, _)), Some(admin)) = (&server, &admin) {
        refuse_clash(cx, listen, admin.listen);
    }
    let probe = cx.keep(admin::build_probe(cx, &raw.probe));
    let checks = build_checks(cx, &raw);
    let pools = checks
        .as_ref()
        .and_then(|checks| cx.keep(pools::build_pools(cx, &raw, checks)));
    let mut warnings = Vec::new();
    let geo = cx.keep(super::geo::build_geo(cx, raw.geo.as_ref(), base));
    let names = build_names(cx, &raw, &checks, &pools, &geo, &mut warnings);
    if let Some(Some(g)) = &geo {
        g.forget();
    }
    if let (Some(names), Some((pools, members))) = (&names, &pools) {
        cx.keep(super::cycles::refuse_cycles(cx, names, pools, members));
    }
    let regions = pools
        .as_ref()
        .and_then(|(_, members)| cx.keep(pools::build_regions(cx, &raw, members)));
    let alerts = cx.keep(admin::build_alerts(cx, &raw.alerts));
    let rrl = cx.keep(server::build_rrl(cx, &raw.rrl));
    let cluster = cx.keep(cluster::build_cluster(cx, raw.cluster.as_ref(), base));
    let dnssec = cx.keep(dnssec::build_dnssec(cx, &raw, base));
    cx.finish()?;
    // `finish` returned Ok: no part failed, so each is there.
    let (listen, zones_dir) = there(server);
    let mut wire = there(wire);
    wire.transfer = std::sync::Arc::new(there(transfer));
    let (admin, probe) = (there(admin), there(probe));
    let (pools, members) = there(pools);
    Ok(Config {
        source: cx.source.to_string(),
        path: None,
        listen,
        zones_dir,
        wire,
        admin_listen: admin.listen,
        token_file: admin.token_file,
        state_file: admin.state_file,
        admin_limits: admin.limits,
        admin_allowed_hosts: admin.allowed_hosts,
        max_in_flight: probe.max_in_flight,
        max_body: probe.max_body,
        probe_queue: probe.queue,
        probe_source: probe.source,
        resolvers: probe.resolvers,
        serve_stale: probe.serve_stale,
        checks: there(checks),
        pools,
        members,
        names: there(names),
        regions: there(regions),
        alerts: there(alerts),
        rrl: there(rrl),
        cluster: there(cluster),
        dnssec: there(dnssec),
        geo: there(geo),
        warnings,
        text: cx.text.to_string(),
    })
}

/// The names, once the checks and pools they need were built without an error.
fn build_names(
    cx: &Ctx,
    raw: &file::File,
    checks: &Option<Vec<crate::config::Check>>,
    pools: &Option<(Vec<crate::config::Pool>, Vec<crate::config::Member>)>,
    geo: &Option<Option<std::sync::Arc<crate::steer::geo::Geo>>>,
    warnings: &mut Vec<String>,
) -> Option<Vec<crate::config::BoundName>> {
    let (Some(checks), Some((pools, members))) = (checks, pools) else {
        return None;
    };
    let geo = geo.as_ref().and_then(|g| g.as_deref());
    cx.keep(names::build_names(
        cx, raw, checks, pools, members, warnings, geo,
    ))
}

/// A part of the configuration that `Ctx::finish` found without an error.
fn there<T>(part: Option<T>) -> T {
    part.expect("a part without an error is there")
}

/// Every check, or None with the errors of those that failed kept.
fn build_checks(cx: &Ctx, raw: &file::File) -> Option<Vec<crate::config::Check>> {
    raw.checks
        .iter()
        .map(|(name, c)| cx.keep(checks::build_check(cx, name, c)))
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

/// Keeps an error when the admin API's address is one DNS listens on over TCP.
fn refuse_clash(cx: &Ctx, listen: &[std::net::SocketAddr], admin: std::net::SocketAddr) {
    if let Some(i) = listen.iter().position(|&a| server::clash(admin, a)) {
        cx.keep::<()>(Err(cx.err(
            "admin.listen",
            format!(
                "{admin} clashes with server.listen[{i}] ({}), where DNS listens on TCP: both cannot be bound",
                listen[i]
            ),
        )));
    }
}
