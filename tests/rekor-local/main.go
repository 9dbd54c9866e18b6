// Command rekor-local runs the real Rekor v1 server (github.com/sigstore/rekor's
// rekor-server) on a Trillian log that lives in this process with in-memory storage,
// so gantry's tests can enter signatures in a transparency log and have cosign verify
// the entries, with no database and no network.
//
//	rekor-local --port 3000
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"

	"github.com/google/trillian/extension"
	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/storage/memory"
	"github.com/google/trillian/testonly/integration"
	"github.com/sigstore/rekor/cmd/rekor-server/app"
)

func main() {
	port := flag.String("port", "3000", "port for Rekor's HTTP API on 127.0.0.1")
	flag.Parse()

	trees := memory.NewTreeStorage()
	registry := extension.Registry{
		AdminStorage:  memory.NewAdminStorage(trees),
		LogStorage:    memory.NewLogStorage(trees, nil),
		QuotaManager:  quota.Noop(),
		MetricFactory: monitoring.InertMetricFactory{},
	}
	// A Trillian log server, admin server and sequencer, all in this process.
	env, err := integration.NewLogEnvWithRegistry(context.Background(), 1, registry)
	if err != nil {
		log.Fatalf("starting Trillian: %v", err)
	}
	host, trillianPort, err := net.SplitHostPort(env.Address)
	if err != nil {
		log.Fatalf("Trillian address %q: %v", env.Address, err)
	}
	// Rekor creates its tree in Trillian when no tree id is given.
	os.Args = []string{
		"rekor-server", "serve",
		"--trillian_log_server.address=" + host,
		"--trillian_log_server.port=" + trillianPort,
		"--rekor_server.address=127.0.0.1",
		"--port=" + *port,
		"--rekor_server.signer=memory",
		"--enable_retrieve_api=false",
		"--log_type=prod",
	}
	app.Execute()
}
