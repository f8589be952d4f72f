# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_gtmd_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_gtmd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_gtmd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_gtmd_using_subcommand
    set -l cmd (__fish_gtmd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c gtmd -n "__fish_gtmd_needs_command" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_needs_command" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_needs_command" -s V -l version -d 'Print version'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "check-config" -d 'Check a configuration and its zone files, then exit 0 (valid) or 1 (invalid)'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "agent" -d 'Probe and publish this instance\'s views to the cluster ([cluster] in --config), and serve the admin API, but answer no DNS: a vantage point that counts in the quorum'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "dnssec" -d 'DNSSEC keys: make one, or print the DS records for the parent zone'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "completions" -d 'Print shell completions for SHELL (bash, zsh, fish, elvish or powershell)'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "manpage" -d 'Print the manual page, gtmd(8), in roff; with DIR, write it there with one page per command (gtmd-ctl(8), gtmd-ctl-disable(8), ...)'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "ctl" -d 'Talk to a running gtmd through its admin API (address and token from --config)'
complete -c gtmd -n "__fish_gtmd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand check-config" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand agent" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand agent" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and not __fish_seen_subcommand_from keygen ds help" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and not __fish_seen_subcommand_from keygen ds help" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and not __fish_seen_subcommand_from keygen ds help" -f -a "keygen" -d 'Make a key pair for ZONE as BIND\'s K<zone>+<alg>+<tag>.key and .private (a CSK, flags 257, unless --zsk) and print its base name, to list in [zones."ZONE".dnssec] keys'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and not __fish_seen_subcommand_from keygen ds help" -f -a "ds" -d 'Print the DS records (SHA-256) of ZONE\'s keys in --config, for the parent zone'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and not __fish_seen_subcommand_from keygen ds help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from keygen" -s a -l algorithm -d '13 (ECDSAP256SHA256) or 15 (ED25519)' -r
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from keygen" -l dir -d 'Where to write the files' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from keygen" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from keygen" -l zsk -d 'A zone-signing key (flags 256) for a KSK/ZSK split or a ZSK rollover'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from ds" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from ds" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Make a key pair for ZONE as BIND\'s K<zone>+<alg>+<tag>.key and .private (a CSK, flags 257, unless --zsk) and print its base name, to list in [zones."ZONE".dnssec] keys'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from help" -f -a "ds" -d 'Print the DS records (SHA-256) of ZONE\'s keys in --config, for the parent zone'
complete -c gtmd -n "__fish_gtmd_using_subcommand dnssec; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand completions" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand completions" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand manpage" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -l admin -d 'The admin API address (default: admin.listen of --config, else 127.0.0.1:8053)' -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -l token-file -d 'File holding the bearer token (default: admin.token_file of --config)' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "status" -d 'Every member, name, region and override, as JSON'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "disable" -d 'Take TARGET out of every answer, whatever its health. It is still probed'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "force-up" -d 'Keep TARGET in answers whatever its health'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "enable" -d 'Remove the override of TARGET: its health decides again'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "overrides" -d 'The overrides in force'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "explain" -d 'Why NAME answers what it does: each member\'s eligibility, the order tried, and every possible answer with its probability, for the client given (address or subnet)'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "reload" -d 'Read the configuration and zones again (as SIGHUP does); prints what changed, or the error and exits 1 with nothing changed'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "history" -d 'What happened to TARGET (a name, or a member as POOL/MEMBER, its name or address) over the last hour (or --since): a line per step with its state and probe latency, or its queries per second and answer shares, then the changes'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and not __fish_seen_subcommand_from status disable force-up enable overrides explain reload history help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from status" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l reason -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l for -d 'End by itself after this long (a drain), e.g. 30m' -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from disable" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from force-up" -l reason -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from force-up" -l for -d 'End by itself after this long (a drain), e.g. 30m' -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from force-up" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from force-up" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from enable" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from overrides" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from overrides" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from explain" -l client -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from explain" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from explain" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from history" -l since -d 'How far back: `15m`, `1h`, `24h`' -r
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from history" -s c -l config -d 'Configuration file. Without it, the embedded sample (dist/gtmd.toml) is used, with zones/ taken from the working directory' -r -F
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from history" -l json -d 'Print the JSON as /history gives it'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from history" -s h -l help -d 'Print help'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "status" -d 'Every member, name, region and override, as JSON'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Take TARGET out of every answer, whatever its health. It is still probed'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "force-up" -d 'Keep TARGET in answers whatever its health'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Remove the override of TARGET: its health decides again'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "overrides" -d 'The overrides in force'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "explain" -d 'Why NAME answers what it does: each member\'s eligibility, the order tried, and every possible answer with its probability, for the client given (address or subnet)'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Read the configuration and zones again (as SIGHUP does); prints what changed, or the error and exits 1 with nothing changed'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "history" -d 'What happened to TARGET (a name, or a member as POOL/MEMBER, its name or address) over the last hour (or --since): a line per step with its state and probe latency, or its queries per second and answer shares, then the changes'
complete -c gtmd -n "__fish_gtmd_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "check-config" -d 'Check a configuration and its zone files, then exit 0 (valid) or 1 (invalid)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "agent" -d 'Probe and publish this instance\'s views to the cluster ([cluster] in --config), and serve the admin API, but answer no DNS: a vantage point that counts in the quorum'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "dnssec" -d 'DNSSEC keys: make one, or print the DS records for the parent zone'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "completions" -d 'Print shell completions for SHELL (bash, zsh, fish, elvish or powershell)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "manpage" -d 'Print the manual page, gtmd(8), in roff; with DIR, write it there with one page per command (gtmd-ctl(8), gtmd-ctl-disable(8), ...)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "ctl" -d 'Talk to a running gtmd through its admin API (address and token from --config)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and not __fish_seen_subcommand_from check-config agent dnssec completions manpage ctl help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from dnssec" -f -a "keygen" -d 'Make a key pair for ZONE as BIND\'s K<zone>+<alg>+<tag>.key and .private (a CSK, flags 257, unless --zsk) and print its base name, to list in [zones."ZONE".dnssec] keys'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from dnssec" -f -a "ds" -d 'Print the DS records (SHA-256) of ZONE\'s keys in --config, for the parent zone'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "status" -d 'Every member, name, region and override, as JSON'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "disable" -d 'Take TARGET out of every answer, whatever its health. It is still probed'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "force-up" -d 'Keep TARGET in answers whatever its health'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "enable" -d 'Remove the override of TARGET: its health decides again'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "overrides" -d 'The overrides in force'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "explain" -d 'Why NAME answers what it does: each member\'s eligibility, the order tried, and every possible answer with its probability, for the client given (address or subnet)'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "reload" -d 'Read the configuration and zones again (as SIGHUP does); prints what changed, or the error and exits 1 with nothing changed'
complete -c gtmd -n "__fish_gtmd_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "history" -d 'What happened to TARGET (a name, or a member as POOL/MEMBER, its name or address) over the last hour (or --since): a line per step with its state and probe latency, or its queries per second and answer shares, then the changes'
