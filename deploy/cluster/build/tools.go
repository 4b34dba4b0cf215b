//go:build tools

// Package build pins the Kubernetes components that scripts/cluster.sh builds: the `tools`
// build tag keeps this file out of every normal build, while `go mod tidy` still records the
// modules these commands need in go.mod and go.sum.
package build

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
