// Package deploy holds no code: its tests check the deployment files
// beside it (docs/operations.md#deploying). The Kubernetes manifests under
// k8s/ decode strictly into the Kubernetes API types and agree with each
// other and with tailor's configuration; the compose file under compose/
// loads with the Compose specification's own loader; the Grafana dashboard
// under grafana/ queries only metrics a live engine exports; systemd-analyze
// verifies the unit under systemd/.
package deploy
