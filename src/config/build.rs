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
    let (listen, zones_dir, mut wire) = server::build_server(cx, &raw.server, base)?;
    wire.transfer = std::sync::Arc::new(transfer::build_transfer(
        cx,
        &raw,
        base,
        wire.allow_transfer.clone(),
    )?);
    let admin = admin::build_admin(cx, &raw.admin, base)?;
    let probe = admin::build_probe(cx, &raw.probe)?;
    let checks = raw
        .checks
        .iter()
        .map(|(name, c)| checks::build_check(cx, name, c))
        .collect::<Result<Vec<_>, _>>()?;
    let (pools, members) = pools::build_pools(cx, &raw, &checks)?;
    let mut warnings = Vec::new();
    let names = names::build_names(cx, &raw, &checks, &pools, &members, &mut warnings)?;
    let regions = pools::build_regions(cx, &raw, &members)?;
    let alerts = admin::build_alerts(cx, &raw.alerts)?;
    let rrl = server::build_rrl(cx, &raw.rrl)?;
    let cluster = cluster::build_cluster(cx, raw.cluster.as_ref(), base)?;
    let dnssec = dnssec::build_dnssec(cx, &raw, base)?;
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
        max_in_flight: probe.max_in_flight,
        max_body: probe.max_body,
        probe_queue: probe.queue,
        probe_source: probe.source,
        resolvers: probe.resolvers,
        serve_stale: probe.serve_stale,
        checks,
        pools,
        members,
        names,
        regions,
        alerts,
        rrl,
        cluster,
        dnssec,
        warnings,
        text: cx.text.to_string(),
    })
}
