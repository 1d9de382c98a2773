// Package grafana holds the Grafana side of operating the router:
// pve-migration-dashboard.json and the provisioning files docker compose
// mounts (provisioning/). Its Go test checks the dashboard's structure and
// runs every panel query against a real Prometheus scraping a real router
// under traffic. There is no Go API.
package grafana
