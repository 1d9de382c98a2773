#!/usr/bin/perl
# Oracle for TestAgainstPVEJSONSchema: PVE's own checker, pve-common's
# PVE/JSONSchema.pm (found through @INC, e.g. perl -I$PVE_COMMON_SRC), run
# on [{"schema": RETURNS, "data": VALUE}, ...] from stdin. Prints, per case,
# the errors check_prop reports as [[path, message], ...].
#
# pve-network registers a few formats the SDN schemas name; they are
# registered here the way pve-network does (src/PVE/Network/SDN/...).
use strict;
use warnings;
use JSON;
use PVE::JSONSchema;

PVE::JSONSchema::register_format('pve-sdn-fabric-id', sub {
    my ($id, $noerr) = @_;
    if ($id !~ m/^[a-zA-Z0-9][a-zA-Z0-9-]{0,6}[a-zA-Z0-9]?$/i) {
        return undef if $noerr;
        die "Fabric ID '$id' contains illegal characters\n";
    }
    return $id;
});
PVE::JSONSchema::register_format('pve-sdn-isis-net', sub {
    my ($net) = @_;
    die "value does not look like a valid isis net\n"
        if $net !~ m/^[a-fA-F0-9]{2}(\.[a-fA-F0-9]{4}){3,9}\.[a-fA-F0-9]{2}$/;
    return $net;
});
PVE::JSONSchema::register_format('pve-sdn-bgp-rt', sub {
    my ($rt) = @_;
    if ($rt =~ m/^(\d+):(\d+)$/) {
        my ($asn, $id) = ($1, $2);
        die "value does not look like a valid bgp route-target\n" if $asn < 0 || $asn > 4294967295;
        die "value does not look like a valid bgp route-target\n" if $id < 0 || $id > 4294967295;
    } else {
        die "value does not look like a valid bgp route-target\n";
    }
    return $rt;
});

my $json = JSON->new->utf8->allow_nonref;
my $cases = $json->decode(do { local $/; <STDIN> });
my @out;
for my $c (@$cases) {
    my $errors = {};
    eval { PVE::JSONSchema::check_prop($c->{data}, $c->{schema}, '', $errors); };
    $errors->{_died} = "$@" if $@;
    push @out, [ map { [$_, $errors->{$_}] } sort keys %$errors ];
}
print $json->encode({ backend => JSON->backend, results => \@out });
