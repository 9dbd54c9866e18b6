// Command referrers-registry serves go-containerregistry's in-memory registry with
// the OCI 1.1 referrers API switched on, for gantry's tests of that code path.
package main

import (
	"flag"
	"log"
	"net/http"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("address", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	handler := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(log.Writer(), "", 0)))
	log.Fatal(http.ListenAndServe(*addr, handler))
}
