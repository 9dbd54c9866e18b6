// Command timestamp-local runs the real RFC 3161 timestamp authority
// (github.com/sigstore/timestamp-authority's REST API) with a signing chain made in
// memory at start-up, for gantry's tests. The stock timestamp-server also serves
// metrics on the fixed port 2112, so only one could run on a machine at a time; this
// one serves the API alone, on the port it is given.
//
//	timestamp-local --port 3000
package main

import (
	"flag"
	"log"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	port := flag.Int("port", 3000, "port for the API on 127.0.0.1")
	flag.Parse()

	// The settings timestamp-server's flags default to, read by the API through viper.
	viper.Set("timestamp-signer", "memory")
	viper.Set("timestamp-signer-hash", "sha256")
	viper.Set("enforce-intermediate-eku", true)
	viper.Set("max-request-body-size", uint64(1<<20))
	viper.Set("default-policy-oid", "1.3.6.1.4.1.57264.2")
	viper.Set("accepted-policy-oids", []string{"1.3.6.1.4.1.57264.2"})

	api := server.NewRestAPIServer("127.0.0.1", *port, []string{"http"}, false, 10*time.Second, 10*time.Second)
	defer func() { _ = api.Shutdown() }()
	if err := api.Serve(); err != nil {
		log.Fatal(err)
	}
}
