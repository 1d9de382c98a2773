#!/usr/bin/perl
# Reads [[pattern, value], ...] as JSON on stdin and prints, as JSON, for
# each pair whether the value matches the pattern the way PVE's check_prop
# applies schema patterns: m/^$pattern$/ on a decoded character string.
# Also answers is_integer and is_number for the value with JSONSchema.pm's
# regular expressions, so the Go port's type rules are checked against Perl.
use strict;
use warnings;
use JSON::PP;

my $json = JSON::PP->new->utf8->canonical;
my $in = do { local $/; <STDIN> };
my $pairs = $json->decode($in);
my @out;
for my $p (@$pairs) {
    my ($pattern, $value) = @$p;
    my $m = eval { $value =~ m/^$pattern$/ ? 1 : 0 };
    $m = -1 if $@;
    my $int = $value =~ m/^[+-]?\d+$/ ? 1 : 0;
    my $num = $value =~ /^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$/ ? 1 : 0;
    push @out, [$m, $int, $num];
}
print $json->encode(\@out);
