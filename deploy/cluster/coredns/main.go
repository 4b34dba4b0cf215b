// CoreDNS for the local cluster (scripts/cluster.sh) with only the plugins its Corefile uses,
// chosen at compile time the way CoreDNS documents for custom builds (its own main package
// imports every plugin in core/plugin/zplugin.go and lists them in
// core/dnsserver/zdirectives.go). Without `forward` (and every plugin that talks to something
// outside the cluster) in the binary, no Corefile can make it resolve names elsewhere; it also
// builds from about 750 packages instead of about 1,300.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The plugins in CoreDNS's own order (zdirectives.go): a request passes them in this order,
// whatever the order in the Corefile.
func init() {
	dnsserver.Directives = []string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache",
		"kubernetes", "loop"}
}

func main() { coremain.Run() }
