// Command with-deps uses real modules from the Go module proxy, so its SBOM has
// dependencies to list.
package main

import (
	"fmt"
	"runtime"

	"github.com/google/uuid"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

func main() {
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://example.com/gantry"))
	title := cases.Title(language.English).String("with deps")
	fmt.Printf("%s on %s/%s: %s\n", title, runtime.GOOS, runtime.GOARCH, id)
}
