// Command hello prints the platform it was built for, so a test can tell which
// image of a multi-platform index it is running.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Printf("hello from %s/%s\n", runtime.GOOS, runtime.GOARCH)
	if dir := os.Getenv("KO_DATA_PATH"); dir != "" {
		if b, err := os.ReadFile(dir + "/greeting.txt"); err == nil {
			fmt.Print(string(b))
		}
	}
}
