// Package prometheus holds the Prometheus side of operating the router:
// rules.yml (alerts), rules_test.yml (their promtool unit tests) and
// prometheus.yml (a scrape configuration). Its Go test checks that every
// alert names the operator's next command, uses only metric names the
// router exports or the contract fixes, and is covered by promtool tests
// that fail when the alert is broken. There is no Go API.
package prometheus
