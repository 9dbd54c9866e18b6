//go:build tools

// Package tools pins the GitHub CLI, whose `gh attestation verify` judges the
// attestation bundles gantry stores; scripts/test builds it from this module.
package tools

import _ "github.com/cli/cli/v2/cmd/gh"
