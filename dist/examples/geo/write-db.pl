#!/usr/bin/perl
# Writes geo.mmdb from networks.json with MaxMind's own writer (Debian: libmaxmind-db-writer-perl):
#   perl write-db.pl networks.json geo.mmdb Example-City
use strict; use warnings;
use JSON::PP; use MaxMind::DB::Writer::Tree;
my ($json, $out, $type, $ipv, $alias) = @ARGV;
$ipv //= 6; $alias //= 1;   # an IPv6 tree, IPv4 aliased at ::ffff:0:0/96 (as MaxMind's)
my %types = (continent => 'map', code => 'utf8_string', country => 'map',
  iso_code => 'utf8_string', subdivisions => ['array', 'map'],
  autonomous_system_number => 'uint32', autonomous_system_organization => 'utf8_string',
  location => 'map', latitude => 'double', longitude => 'double', traits => 'map');
# IPinfo's layout: plain strings.
%types = (%types, country => 'utf8_string', continent => 'utf8_string', asn => 'utf8_string')
  if $type =~ /IPinfo/;
my $tree = MaxMind::DB::Writer::Tree->new(ip_version => $ipv, record_size => 28,
  database_type => $type, languages => ['en'], description => { en => 'gtmd test' },
  map_key_type_callback => sub { $types{ $_[0] } }, alias_ipv6_to_ipv4 => ($ipv == 6 && $alias ? 1 : 0),
  remove_reserved_networks => 0);
open my $in, '<', $json or die "$json: $!";
my $nets = decode_json(do { local $/; <$in> });
$tree->insert_network($_->[0], $_->[1]) for @$nets;
open my $fh, '>:raw', $out or die "$out: $!";
$tree->write_tree($fh);
close $fh or die;
